//! The webhook channel: a JSON POST per notification with a blocking reqwest client.
//!
//! The client is built on the notifier's worker thread, on first use, so that building
//! (and dropping) it never happens inside an async runtime.

use std::time::Duration;

use super::config::{Secret, WebhookConfig, read_secret};
use super::worker::{Failure, error_chain};
use super::{Notification, NotifyError};

/// How much of an error response's body is kept in the delivery's error text.
const BODY_EXCERPT_CHARS: usize = 200;

/// A validated webhook channel.
pub(crate) struct WebhookChannel {
    url: String,
    timeout: Duration,
    token: Option<Secret>,
    client: Option<Result<reqwest::blocking::Client, String>>,
}

impl WebhookChannel {
    /// Checks the config and reads the token (no connection, no client yet).
    pub(crate) fn new(config: &WebhookConfig) -> Result<Self, NotifyError> {
        let url = config.url.trim();
        let invalid = |reason: &str| NotifyError::InvalidUrl {
            url: super::config::redact_url(url),
            reason: reason.to_owned(),
        };
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(invalid("it must start with http:// or https://"));
        }
        match reqwest::Url::parse(url) {
            Ok(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => return Err(invalid("it has no host")),
            // The parser's message does not echo the URL, so it is safe to show.
            Err(e) => return Err(invalid(&e.to_string())),
        }
        if config.timeout_ms == 0 {
            return Err(NotifyError::Invalid {
                field: "webhook.timeout_ms".into(),
                reason: "it must be at least 1".into(),
            });
        }
        let token = match &config.bearer_token_env {
            Some(var) => Some(read_secret("webhook.bearer_token_env", var)?),
            None => None,
        };
        Ok(WebhookChannel {
            url: url.to_owned(),
            timeout: Duration::from_millis(config.timeout_ms),
            token,
            client: None,
        })
    }

    fn client(&mut self) -> Result<&reqwest::blocking::Client, Failure> {
        let timeout = self.timeout;
        let client = self.client.get_or_insert_with(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
        });
        client.as_ref().map_err(|e| Failure::permanent(e.clone()))
    }

    /// One attempt to POST `payload`. 2xx is success; 408, 429 and 5xx and network errors
    /// are worth retrying; other statuses are not.
    pub(crate) fn send(&mut self, payload: &serde_json::Value) -> Result<(), Failure> {
        let url = self.url.clone();
        let token = self.token.clone();
        let client = self.client()?;
        let mut request = client.post(&url).json(payload);
        if let Some(token) = &token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            // Without the URL: webhook URLs often carry a secret.
            .send()
            .map_err(|e| Failure::transient(error_chain(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().unwrap_or_default();
        let excerpt: String = body.trim().chars().take(BODY_EXCERPT_CHARS).collect();
        let text = if excerpt.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {}: {excerpt}", status.as_u16())
        };
        let code = status.as_u16();
        if code == 408 || code == 429 || status.is_server_error() {
            Err(Failure::transient(text))
        } else {
            Err(Failure::permanent(text))
        }
    }
}

impl Notification {
    /// The webhook body: `{"text": "[modelgate] subject\ntext", "kind", "subject",
    /// "detail"}`; `text` is what Slack and compatible services display.
    pub fn webhook_payload(&self) -> serde_json::Value {
        serde_json::json!({
            "text": format!("[modelgate] {}\n{}", self.subject, self.text),
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
        })
    }
}
