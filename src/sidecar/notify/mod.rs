//! Notifications to administrators: before a model update takes effect, on drift alerts,
//! when runs start, finish or fail, when a review is needed, on promotion and on rollback.
//!
//! Channels ([`NotifyConfig`]): email over SMTP, a webhook (JSON with a Slack-compatible
//! `text` field plus structured fields), and the log (`tracing`), which is the fallback when
//! no channel is configured or a channel fails.
//!
//! [`Notifier::notify`] never blocks: it queues the notification for one background thread,
//! which delivers it to every configured channel (the two concurrently), retries failures
//! with exponential backoff (`attempts`, `retry_base_ms`), and writes the notification to the
//! log when a channel gives up, so nothing is silently lost. Each outcome is a [`Delivery`]:
//! kept in a bounded in-memory log ([`Notifier::deliveries`]) and passed to an optional hook
//! ([`Notifier::with_hook`]), e.g. to write audit rows. [`Notifier::wait_idle`] waits until
//! everything queued has been handled.
//!
//! ```no_run
//! use modelgate::sidecar::notify::{Notification, NotificationKind, Notifier, NotifyConfig};
//!
//! let notifier = Notifier::new(NotifyConfig::default())?; // no channel: the log only
//! let id = notifier.notify(
//!     Notification::new(NotificationKind::ModelUpdate, "ranker@4 goes live in 10 minutes", "...")
//!         .with_detail(serde_json::json!({"model": "ranker", "version": 4})),
//! );
//! # let _ = id;
//! # Ok::<(), modelgate::sidecar::notify::NotifyError>(())
//! ```
//!
//! Credentials are read once, from the environment variables the config names, when the
//! notifier is built; they never appear in `Debug` output, errors or the log. Webhook URLs
//! are shown only as `scheme://host/…` for the same reason.

mod config;
mod email;
mod webhook;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use config::{
    DEFAULT_ATTEMPTS, DEFAULT_RETRY_BASE_MS, DEFAULT_SMTP_TIMEOUT_MS, DEFAULT_WEBHOOK_TIMEOUT_MS,
    NotifyConfig, SmtpConfig, SmtpTls, WebhookConfig,
};

use email::EmailChannel;
use webhook::WebhookChannel;
use worker::{Job, Retry, Shared, Worker};

/// How many outcomes [`Notifier::deliveries`] keeps (the oldest are dropped first).
pub const DELIVERY_LOG_CAPACITY: usize = 1000;
/// How many notifications may wait for the worker; beyond that, `notify` logs them at once
/// instead of queueing.
pub const QUEUE_CAPACITY: usize = 1024;

/// Why a notifier cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// An email address does not parse.
    #[error("notify: {field} = {value:?} is not a valid email address: {reason}")]
    InvalidAddress {
        /// The config field, e.g. `smtp.to[1]`.
        field: String,
        /// The text given.
        value: String,
        /// The parser's reason.
        reason: String,
    },
    /// `smtp.to` is empty.
    #[error("notify: smtp.to is empty: name at least one recipient")]
    NoRecipients,
    /// An environment variable named in the config is unusable.
    #[error("notify: {field} names the environment variable {var}, but {reason}")]
    MissingEnv {
        /// The config field, e.g. `smtp.password_env`.
        field: String,
        /// The variable's name.
        var: String,
        /// Not set, empty, or not UTF-8.
        reason: String,
    },
    /// The webhook URL is unusable.
    #[error("notify: webhook.url {url:?} is not usable: {reason}")]
    InvalidUrl {
        /// The URL, reduced to `scheme://host/…`.
        url: String,
        /// Why.
        reason: String,
    },
    /// Another value is unusable.
    #[error("notify: {field}: {reason}")]
    Invalid {
        /// The config field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The worker thread cannot be started.
    #[error("notify: cannot start the worker thread: {0}")]
    Worker(String),
}

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationKind {
    /// A model update will take effect after the grace period.
    ModelUpdate,
    /// Drift was detected.
    DriftAlert,
    /// A lifecycle run started.
    RunStarted,
    /// A lifecycle run finished.
    RunFinished,
    /// A lifecycle run failed.
    RunFailed,
    /// A candidate waits for a human review.
    ReviewNeeded,
    /// A model was promoted.
    Promotion,
    /// A model was rolled back.
    Rollback,
    /// Anything else.
    Other,
}

impl NotificationKind {
    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::ModelUpdate => "model_update",
            NotificationKind::DriftAlert => "drift_alert",
            NotificationKind::RunStarted => "run_started",
            NotificationKind::RunFinished => "run_finished",
            NotificationKind::RunFailed => "run_failed",
            NotificationKind::ReviewNeeded => "review_needed",
            NotificationKind::Promotion => "promotion",
            NotificationKind::Rollback => "rollback",
            NotificationKind::Other => "other",
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message to the administrators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// What it is about.
    pub kind: NotificationKind,
    /// One line; emails get `[modelgate] ` in front.
    pub subject: String,
    /// The human-readable message.
    pub text: String,
    /// Structured facts (model, versions, run id, statistics...); `null` when none.
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl Notification {
    /// A notification without detail.
    pub fn new(
        kind: NotificationKind,
        subject: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Notification {
            kind,
            subject: subject.into(),
            text: text.into(),
            detail: serde_json::Value::Null,
        }
    }

    /// The same with `detail`.
    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// The email subject: `[modelgate] {subject}`.
    pub fn email_subject(&self) -> String {
        format!("[modelgate] {}", self.subject)
    }

    /// The plain-text email body: the text, then the detail as pretty JSON (when there is
    /// one).
    pub fn email_body(&self) -> String {
        let mut body = self.text.trim_end().to_owned();
        if !self.detail.is_null() {
            let detail = serde_json::to_string_pretty(&self.detail)
                .unwrap_or_else(|_| self.detail.to_string());
            body.push_str("\n\nDetails:\n");
            body.push_str(&detail);
        }
        body.push('\n');
        body
    }
}

/// Identifies a notification within one [`Notifier`] (counting from 1). Webhook bodies
/// carry it as `id`, so receivers can drop the duplicates a retry may cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotificationId(u64);

impl NotificationId {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a delivery went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// SMTP.
    Email,
    /// The webhook.
    Webhook,
    /// The log (`tracing`), the fallback.
    Log,
}

impl Channel {
    /// `email`, `webhook` or `log`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Log => "log",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one notification on one channel.
///
/// A notification gets one `email` and/or `webhook` row per configured channel, plus a
/// `log` row when no channel is configured (`error: None`) or when a channel failed
/// (`error` then says which and why). `log` rows are always `ok`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The notification.
    pub id: NotificationId,
    /// Its kind.
    pub kind: NotificationKind,
    /// Its subject.
    pub subject: String,
    /// The channel.
    pub channel: Channel,
    /// Whether it was delivered.
    pub ok: bool,
    /// Attempts made (1 for the log).
    pub attempts: u32,
    /// The last error (for `log` rows: why the notification was logged instead of sent).
    pub error: Option<String>,
    /// When the outcome was known, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Called with every [`Delivery`] as it is recorded, on the notifier's worker thread (so
/// it may block briefly, e.g. to write an audit row, but delays later deliveries while it
/// does). A panic in it is caught and logged.
pub type DeliveryHook = Arc<dyn Fn(&Delivery) + Send + Sync>;

/// Sends notifications in the background. Cheap to clone; all clones share one queue and
/// one worker thread, which exits once every clone is dropped and the queue is drained.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: NotifyConfig,
    channels: Vec<Channel>,
    tx: SyncSender<Job>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("config", &self.inner.config)
            .field("channels", &self.inner.channels)
            .field("pending", &self.inner.shared.pending())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Validates `config`, reads the credentials it names from the environment and starts
    /// the worker thread. Nothing is sent or connected to yet.
    ///
    /// # Errors
    /// [`NotifyError`] naming the field: an address that does not parse, no recipient, a
    /// named environment variable that is not set, a URL that is not `http(s)://host...`,
    /// zero attempts or timeouts; or when the thread cannot be started.
    pub fn new(config: NotifyConfig) -> Result<Self, NotifyError> {
        Self::build(config, None)
    }

    /// Like [`Notifier::new`], with a hook called for every [`Delivery`].
    ///
    /// # Errors
    /// As [`Notifier::new`].
    pub fn with_hook(config: NotifyConfig, hook: DeliveryHook) -> Result<Self, NotifyError> {
        Self::build(config, Some(hook))
    }

    fn build(config: NotifyConfig, hook: Option<DeliveryHook>) -> Result<Self, NotifyError> {
        if config.attempts == 0 {
            return Err(NotifyError::Invalid {
                field: "attempts".into(),
                reason: "it must be at least 1".into(),
            });
        }
        let email = config.smtp.as_ref().map(EmailChannel::new).transpose()?;
        let webhook = config
            .webhook
            .as_ref()
            .map(WebhookChannel::new)
            .transpose()?;
        let mut channels = Vec::with_capacity(2);
        if email.is_some() {
            channels.push(Channel::Email);
        }
        if webhook.is_some() {
            channels.push(Channel::Webhook);
        }

        let shared = Arc::new(Shared::new(hook, DELIVERY_LOG_CAPACITY));
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let worker = Worker {
            rx,
            shared: Arc::clone(&shared),
            email,
            webhook,
            retry: Retry {
                attempts: config.attempts,
                base_ms: config.retry_base_ms,
            },
        };
        std::thread::Builder::new()
            .name("modelgate-notify".into())
            .spawn(move || worker.run())
            .map_err(|e| NotifyError::Worker(e.to_string()))?;
        Ok(Notifier {
            inner: Arc::new(Inner {
                config,
                channels,
                tx,
                shared,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// Queues `notification` and returns at once. When the queue is full (the channels
    /// are [`QUEUE_CAPACITY`] notifications behind) the notification is written to the
    /// log instead, right here, and its `log` delivery recorded (the hook then runs on the
    /// caller's thread).
    pub fn notify(&self, notification: Notification) -> NotificationId {
        let inner = &*self.inner;
        let id = NotificationId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        inner.shared.begin();
        let job = Job { id, notification };
        let (job, reason) = match inner.tx.try_send(job) {
            Ok(()) => return id,
            Err(TrySendError::Full(job)) => (
                job,
                format!("the notification queue is full ({QUEUE_CAPACITY} waiting)"),
            ),
            Err(TrySendError::Disconnected(job)) => {
                (job, "the notification worker has stopped".to_owned())
            }
        };
        worker::log_fallback(id, &job.notification, Some(&reason));
        inner.shared.record(Delivery {
            id,
            kind: job.notification.kind,
            subject: job.notification.subject,
            channel: Channel::Log,
            ok: true,
            attempts: 1,
            error: Some(reason),
            at_ms: worker::now_ms(),
        });
        inner.shared.finish();
        id
    }

    /// The most recent outcomes (up to [`DELIVERY_LOG_CAPACITY`]), oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.shared.deliveries()
    }

    /// Waits until every notification queued so far has been handled (sent or given up
    /// and logged, its deliveries recorded and hooks run). False if `timeout` passed first.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.inner.shared.wait_idle(timeout)
    }

    /// The config it was built from.
    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// The configured channels (`email`, `webhook`); empty means the log only.
    pub fn channels(&self) -> &[Channel] {
        &self.inner.channels
    }

    /// How long the pipeline waits between the "model update" notification and the update
    /// (`grace_period_s`).
    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.inner.config.grace_period_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn notifier_is_send_sync_clone() {
        assert_send_sync::<Notifier>();
    }

    #[test]
    fn renders_email_and_webhook() {
        let n = Notification::new(NotificationKind::DriftAlert, "drift on price", "KS 0.4")
            .with_detail(serde_json::json!({"column": "price"}));
        assert_eq!(n.email_subject(), "[modelgate] drift on price");
        assert_eq!(
            n.email_body(),
            "KS 0.4\n\nDetails:\n{\n  \"column\": \"price\"\n}\n"
        );
        let p = n.webhook_payload();
        assert_eq!(p["text"], "[modelgate] drift on price\nKS 0.4");
        assert_eq!(p["kind"], "drift_alert");
        assert_eq!(p["detail"]["column"], "price");
        let plain = Notification::new(NotificationKind::Other, "s", "t\n");
        assert_eq!(plain.email_body(), "t\n");
    }

    #[test]
    fn kinds_serialize_as_their_names() {
        for kind in [
            NotificationKind::ModelUpdate,
            NotificationKind::DriftAlert,
            NotificationKind::RunStarted,
            NotificationKind::RunFinished,
            NotificationKind::RunFailed,
            NotificationKind::ReviewNeeded,
            NotificationKind::Promotion,
            NotificationKind::Rollback,
            NotificationKind::Other,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }
}
