//! The email channel: one plain-text message per notification, over a blocking lettre
//! `SmtpTransport` (run on the notifier's worker thread, never on the caller's).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use super::config::{SmtpConfig, SmtpTls, read_secret};
use super::worker::Failure;
use super::{Notification, NotifyError};

/// A validated SMTP channel, ready to send.
pub(crate) struct EmailChannel {
    transport: SmtpTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl EmailChannel {
    /// Checks the config, reads the credentials and builds the transport (no connection yet).
    pub(crate) fn new(config: &SmtpConfig) -> Result<Self, NotifyError> {
        let host = config.host.trim();
        if host.is_empty() {
            return Err(NotifyError::Invalid {
                field: "smtp.host".into(),
                reason: "it is empty".into(),
            });
        }
        if config.port == Some(0) {
            return Err(NotifyError::Invalid {
                field: "smtp.port".into(),
                reason: "it must be between 1 and 65535".into(),
            });
        }
        if config.timeout_ms == 0 {
            return Err(NotifyError::Invalid {
                field: "smtp.timeout_ms".into(),
                reason: "it must be at least 1".into(),
            });
        }
        let from = parse_mailbox("smtp.from", &config.from)?;
        if config.to.is_empty() {
            return Err(NotifyError::NoRecipients);
        }
        let to = config
            .to
            .iter()
            .enumerate()
            .map(|(i, addr)| parse_mailbox(&format!("smtp.to[{i}]"), addr))
            .collect::<Result<Vec<_>, _>>()?;

        let credentials = match (&config.username_env, &config.password_env) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                let user = read_secret("smtp.username_env", user)?;
                let password = read_secret("smtp.password_env", password)?;
                Some(Credentials::new(
                    user.expose().to_owned(),
                    password.expose().to_owned(),
                ))
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(NotifyError::Invalid {
                    field: "smtp.username_env/password_env".into(),
                    reason: "set both or neither".into(),
                });
            }
        };
        if credentials.is_some() && config.tls == SmtpTls::None {
            tracing::warn!(
                host,
                "smtp: credentials will be sent over a plain-text connection (tls = \"none\")"
            );
        }

        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(host)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(host)?),
        };
        let mut builder = SmtpTransport::builder_dangerous(host)
            .port(config.port())
            .tls(tls)
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(EmailChannel {
            transport: builder.build(),
            from,
            to,
        })
    }

    /// The message for `n`.
    pub(crate) fn message(&self, n: &Notification) -> Result<Message, Failure> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(n.email_subject())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .body(n.email_body())
            .map_err(|e| Failure::permanent(format!("cannot build the message: {e}")))
    }

    /// One attempt to send `message`.
    pub(crate) fn send(&self, message: &Message) -> Result<(), Failure> {
        match self.transport.send(message) {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = super::worker::error_chain(&e);
                Err(if e.is_permanent() {
                    Failure::permanent(text)
                } else {
                    Failure::transient(text)
                })
            }
        }
    }
}

fn parse_mailbox(field: &str, value: &str) -> Result<Mailbox, NotifyError> {
    value
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| NotifyError::InvalidAddress {
            field: field.to_owned(),
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

fn tls_parameters(host: &str) -> Result<TlsParameters, NotifyError> {
    TlsParameters::new(host.to_owned()).map_err(|e| NotifyError::Invalid {
        field: "smtp.tls".into(),
        reason: format!("cannot set up TLS for {host}: {e}"),
    })
}
