//! The `[notify]` config: channels, retries and the grace period.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Default number of attempts per channel and notification.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Default delay before the first retry, in milliseconds (doubled after each attempt).
pub const DEFAULT_RETRY_BASE_MS: u64 = 500;
/// Default SMTP timeout (connect and each command), in milliseconds.
pub const DEFAULT_SMTP_TIMEOUT_MS: u64 = 10_000;
/// Default webhook timeout (whole request), in milliseconds.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 5_000;

/// Where and how notifications are sent.
///
/// The default has no channel: every notification is then written to the log.
///
/// ```toml
/// attempts = 3            # per channel and notification (default 3)
/// retry_base_ms = 500     # first retry after 0.5 s, then 1 s, 2 s, ... (capped at 60 s)
/// grace_period_s = 600    # time between the "model update" notification and the update
///
/// [smtp]
/// host = "smtp.example.com"
/// tls = "starttls"        # "none" (port 25), "starttls" (587, the default), "tls" (465)
/// username_env = "MODELGATE_SMTP_USER"       # names of environment variables,
/// password_env = "MODELGATE_SMTP_PASSWORD"   # never the credentials themselves
/// from = "modelgate <modelgate@example.com>"
/// to = ["ml-oncall@example.com"]
///
/// [webhook]
/// url = "https://hooks.slack.com/services/..."
/// bearer_token_env = "MODELGATE_WEBHOOK_TOKEN"   # optional
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Email over SMTP.
    pub smtp: Option<SmtpConfig>,
    /// JSON POST to a webhook (Slack-compatible `text` field).
    pub webhook: Option<WebhookConfig>,
    /// Attempts per channel and notification before falling back to the log (at least 1).
    pub attempts: u32,
    /// Delay before the first retry in milliseconds; it doubles after each failed attempt,
    /// up to 60 s.
    pub retry_base_ms: u64,
    /// The time, in seconds, between the "model update" notification and the update taking
    /// effect, so administrators can intervene. The notifier only carries it; the pipeline
    /// waits.
    pub grace_period_s: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            smtp: None,
            webhook: None,
            attempts: DEFAULT_ATTEMPTS,
            retry_base_ms: DEFAULT_RETRY_BASE_MS,
            grace_period_s: 0,
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (only for a trusted local relay). Default port 25.
    None,
    /// Plain connection upgraded with STARTTLS, which is required. Default port 587.
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS"). Default port 465.
    Tls,
}

impl SmtpTls {
    /// The conventional port for this mode: 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// The SMTP channel.
///
/// Credentials are never part of the config: `username_env` and `password_env` name the
/// environment variables that hold them, read once when the [`super::Notifier`] is built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Server port; `None` means the mode's default ([`SmtpTls::default_port`]).
    #[serde(default)]
    pub port: Option<u16>,
    /// Connection security (default `starttls`).
    #[serde(default)]
    pub tls: SmtpTls,
    /// Environment variable holding the user name (set together with `password_env`).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Sender mailbox, `addr@example.com` or `Name <addr@example.com>`.
    pub from: String,
    /// Recipient mailboxes (at least one).
    #[serde(default)]
    pub to: Vec<String>,
    /// Timeout for connecting and for each SMTP command, in milliseconds (default 10000).
    #[serde(default = "default_smtp_timeout_ms")]
    pub timeout_ms: u64,
}

impl SmtpConfig {
    /// A config for `host` in the given mode, from `from` to `to`, with the defaults
    /// otherwise (mode's port, no credentials, 10 s timeout).
    pub fn new(host: &str, tls: SmtpTls, from: &str, to: &[&str]) -> Self {
        SmtpConfig {
            host: host.to_owned(),
            port: None,
            tls,
            username_env: None,
            password_env: None,
            from: from.to_owned(),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            timeout_ms: DEFAULT_SMTP_TIMEOUT_MS,
        }
    }

    /// The port to connect to: `port`, or the mode's default.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

fn default_smtp_timeout_ms() -> u64 {
    DEFAULT_SMTP_TIMEOUT_MS
}

/// The webhook channel: a JSON POST of
/// `{"text": "[modelgate] subject\ntext", "kind", "subject", "detail"}`.
///
/// Its `Debug` shows only the URL's scheme and host, since webhook URLs (Slack's, for one)
/// often embed a secret in their path.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The `http://` or `https://` URL to POST to.
    pub url: String,
    /// Timeout for the whole request, in milliseconds (default 5000).
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Environment variable holding a token sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
}

impl WebhookConfig {
    /// A config for `url` with the default timeout and no token.
    pub fn new(url: &str) -> Self {
        WebhookConfig {
            url: url.to_owned(),
            timeout_ms: DEFAULT_WEBHOOK_TIMEOUT_MS,
            bearer_token_env: None,
        }
    }
}

fn default_webhook_timeout_ms() -> u64 {
    DEFAULT_WEBHOOK_TIMEOUT_MS
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("timeout_ms", &self.timeout_ms)
            .field("bearer_token_env", &self.bearer_token_env)
            .finish()
    }
}

/// `scheme://host[:port]` of a URL, with `/…` when anything followed (path, query, or
/// user info, which is dropped too). Text without `://` keeps only what precedes its
/// first `/`.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (had_userinfo, host) = match authority.rsplit_once('@') {
        Some((_, host)) => (true, host),
        None => (false, authority),
    };
    let mut out = String::new();
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(host);
    if had_userinfo || end < rest.len() {
        out.push_str("/…");
    }
    out
}

/// A secret read from the environment: its `Debug` and `Display` never show it.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads the variable named in config field `field`.
pub(crate) fn read_secret(field: &str, var: &str) -> Result<Secret, super::NotifyError> {
    let missing = |reason: &str| super::NotifyError::MissingEnv {
        field: field.to_owned(),
        var: var.to_owned(),
        reason: reason.to_owned(),
    };
    if var.is_empty() {
        return Err(missing("the variable name is empty"));
    }
    match std::env::var(var) {
        Ok(value) if value.is_empty() => Err(missing("it is empty")),
        Ok(value) => Ok(Secret(value)),
        Err(std::env::VarError::NotPresent) => Err(missing("it is not set")),
        Err(std::env::VarError::NotUnicode(_)) => Err(missing("it is not valid UTF-8")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_urls() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redact_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(
            redact_url("https://user:pw@example.com"),
            "https://example.com/…"
        );
        assert_eq!(redact_url("https://h?token=x"), "https://h/…");
        assert_eq!(redact_url("hooks.slack.com/secret"), "hooks.slack.com/…");
    }

    #[test]
    fn ports_follow_the_mode() {
        let mut c = SmtpConfig::new("h", SmtpTls::Tls, "a@b.c", &["d@e.f"]);
        assert_eq!(c.port(), 465);
        c.tls = SmtpTls::None;
        assert_eq!(c.port(), 25);
        c.tls = SmtpTls::Starttls;
        assert_eq!(c.port(), 587);
        c.port = Some(2525);
        assert_eq!(c.port(), 2525);
    }
}
