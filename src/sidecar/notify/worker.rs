//! The background worker: one std thread fed by a bounded queue delivers each notification
//! to every configured channel (concurrently when there are two), retries with backoff,
//! falls back to the log, and records the outcomes.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Receiver;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::email::EmailChannel;
use super::webhook::WebhookChannel;
use super::{Channel, Delivery, DeliveryHook, Notification, NotificationId};

/// The longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 60_000;
/// How many characters of a notification's detail the log fallback writes.
const MAX_LOGGED_DETAIL_CHARS: usize = 16 * 1024;

/// Why one attempt failed, and whether another could succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) permanent: bool,
}

impl Failure {
    pub(crate) fn transient(message: String) -> Self {
        Failure {
            message,
            permanent: false,
        }
    }

    pub(crate) fn permanent(message: String) -> Self {
        Failure {
            message,
            permanent: true,
        }
    }
}

/// `e` and its sources, joined by ": ", without repeating a source already in the text.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One queued notification.
pub(crate) struct Job {
    pub(crate) id: NotificationId,
    pub(crate) notification: Notification,
}

struct State {
    /// Notifications accepted by `notify` and not yet fully handled.
    pending: usize,
    deliveries: VecDeque<Delivery>,
}

/// What the notifier handles and the worker share.
pub(crate) struct Shared {
    state: Mutex<State>,
    idle: Condvar,
    hook: Option<DeliveryHook>,
    capacity: usize,
}

impl Shared {
    pub(crate) fn new(hook: Option<DeliveryHook>, capacity: usize) -> Self {
        Shared {
            state: Mutex::new(State {
                pending: 0,
                deliveries: VecDeque::with_capacity(capacity.min(64)),
            }),
            idle: Condvar::new(),
            hook,
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-updated: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more notification in flight.
    pub(crate) fn begin(&self) {
        self.lock().pending += 1;
    }

    /// One notification fully handled (its deliveries recorded and hooks run).
    pub(crate) fn finish(&self) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(1);
        if state.pending == 0 {
            self.idle.notify_all();
        }
    }

    /// Appends to the bounded log, then runs the hook (outside the lock; a panicking hook
    /// is logged and otherwise ignored).
    pub(crate) fn record(&self, delivery: Delivery) {
        {
            let mut state = self.lock();
            while state.deliveries.len() >= self.capacity.max(1) {
                state.deliveries.pop_front();
            }
            state.deliveries.push_back(delivery.clone());
        }
        if let Some(hook) = &self.hook
            && catch_unwind(AssertUnwindSafe(|| hook(&delivery))).is_err()
        {
            tracing::error!(
                notification = delivery.id.get(),
                channel = %delivery.channel,
                "notify: the delivery hook panicked"
            );
        }
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.iter().cloned().collect()
    }

    pub(crate) fn pending(&self) -> usize {
        self.lock().pending
    }

    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        while state.pending > 0 {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                // Too far in the future to represent: wait in long slices.
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            state = match self.idle.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

/// Marks a job finished however its handling ends.
struct FinishGuard<'a>(&'a Shared);

impl Drop for FinishGuard<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Retry policy.
#[derive(Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    pub(crate) base_ms: u64,
}

impl Retry {
    /// The wait after failed attempt number `n` (1-based): base · 2^(n−1), capped.
    fn backoff(self, n: u32) -> Duration {
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        Duration::from_millis(self.base_ms.saturating_mul(factor).min(MAX_BACKOFF_MS))
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the attempts run out.
    /// Returns the attempts made and the last error.
    fn run(self, mut attempt: impl FnMut() -> Result<(), Failure>) -> (u32, Option<String>) {
        let attempts = self.attempts.max(1);
        let mut n = 1;
        loop {
            match attempt() {
                Ok(()) => return (n, None),
                Err(f) if f.permanent || n >= attempts => return (n, Some(f.message)),
                Err(_) => {
                    thread::sleep(self.backoff(n));
                    n += 1;
                }
            }
        }
    }
}

/// The worker thread's state.
pub(crate) struct Worker {
    pub(crate) rx: Receiver<Job>,
    pub(crate) shared: std::sync::Arc<Shared>,
    pub(crate) email: Option<EmailChannel>,
    pub(crate) webhook: Option<WebhookChannel>,
    pub(crate) retry: Retry,
}

/// One channel's outcome for one notification.
struct Outcome {
    channel: Channel,
    attempts: u32,
    error: Option<String>,
}

impl Worker {
    /// Handles jobs until every sender is gone and the queue is drained.
    pub(crate) fn run(mut self) {
        while let Ok(job) = self.rx.recv() {
            let shared = std::sync::Arc::clone(&self.shared);
            let _finish = FinishGuard(&shared);
            let handled = catch_unwind(AssertUnwindSafe(|| self.handle(&job)));
            if handled.is_err() {
                let reason = "internal error while delivering (see the log)";
                log_fallback(job.id, &job.notification, Some(reason));
                shared.record(delivery(
                    job.id,
                    &job.notification,
                    Channel::Log,
                    true,
                    1,
                    Some(reason.to_owned()),
                ));
            }
        }
    }

    fn handle(&mut self, job: &Job) {
        let Job { id, notification } = job;
        let (id, n) = (*id, notification);
        let retry = self.retry;
        let shared = &*self.shared;

        let email = self.email.as_ref().map(|channel| {
            move || {
                let (attempts, error) = match channel.message(n) {
                    Ok(message) => retry.run(|| channel.send(&message)),
                    Err(f) => (1, Some(f.message)),
                };
                finish_channel(shared, id, n, Channel::Email, attempts, error)
            }
        });
        let payload = {
            let mut payload = n.webhook_payload();
            if let Some(map) = payload.as_object_mut() {
                map.insert("id".into(), serde_json::Value::from(id.get()));
            }
            payload
        };
        let webhook = self.webhook.as_mut().map(|channel| {
            let payload = &payload;
            move || {
                let (attempts, error) = retry.run(|| channel.send(payload));
                finish_channel(shared, id, n, Channel::Webhook, attempts, error)
            }
        });

        let mut outcomes = Vec::with_capacity(2);
        match (email, webhook) {
            (None, None) => {}
            (Some(email), None) => outcomes.push(email()),
            (None, Some(mut webhook)) => outcomes.push(webhook()),
            (Some(email), Some(mut webhook)) => {
                // Two channels: one's outage must not delay the other.
                thread::scope(|s| {
                    let spawned = thread::Builder::new()
                        .name("modelgate-notify-email".into())
                        .spawn_scoped(s, email);
                    let webhook_outcome = webhook();
                    let email_outcome = match spawned {
                        Ok(handle) => handle.join().unwrap_or_else(|_| {
                            let error = Some("internal error while sending".to_owned());
                            finish_channel(shared, id, n, Channel::Email, 1, error)
                        }),
                        // Could not start a thread: send inline instead.
                        Err(_) => email(),
                    };
                    outcomes.push(email_outcome);
                    outcomes.push(webhook_outcome);
                });
            }
        }

        if outcomes.is_empty() {
            log_fallback(id, n, None);
            shared.record(delivery(id, n, Channel::Log, true, 1, None));
            return;
        }
        let failed: Vec<String> = outcomes
            .iter()
            .filter_map(|o| {
                o.error.as_ref().map(|e| {
                    format!(
                        "{} failed after {} attempt{}: {e}",
                        o.channel,
                        o.attempts,
                        if o.attempts == 1 { "" } else { "s" }
                    )
                })
            })
            .collect();
        if !failed.is_empty() {
            let reason = failed.join("; ");
            log_fallback(id, n, Some(&reason));
            shared.record(delivery(id, n, Channel::Log, true, 1, Some(reason)));
        }
    }
}

fn delivery(
    id: NotificationId,
    n: &Notification,
    channel: Channel,
    ok: bool,
    attempts: u32,
    error: Option<String>,
) -> Delivery {
    Delivery {
        id,
        kind: n.kind,
        subject: n.subject.clone(),
        channel,
        ok,
        attempts,
        error,
        at_ms: now_ms(),
    }
}

/// Logs and records one channel's outcome.
fn finish_channel(
    shared: &Shared,
    id: NotificationId,
    n: &Notification,
    channel: Channel,
    attempts: u32,
    error: Option<String>,
) -> Outcome {
    match &error {
        None => tracing::info!(
            notification = id.get(),
            kind = %n.kind,
            channel = %channel,
            attempts,
            "notification sent"
        ),
        Some(e) => tracing::warn!(
            notification = id.get(),
            kind = %n.kind,
            channel = %channel,
            attempts,
            error = %e,
            "notification not sent"
        ),
    }
    shared.record(delivery(
        id,
        n,
        channel,
        error.is_none(),
        attempts,
        error.clone(),
    ));
    Outcome {
        channel,
        attempts,
        error,
    }
}

/// Writes the whole notification to the log: `info` when no channel is configured, `warn`
/// with `reason` when a channel could not deliver it.
pub(crate) fn log_fallback(id: NotificationId, n: &Notification, reason: Option<&str>) {
    let mut detail = if n.detail.is_null() {
        String::new()
    } else {
        n.detail.to_string()
    };
    if detail.chars().count() > MAX_LOGGED_DETAIL_CHARS {
        detail = detail.chars().take(MAX_LOGGED_DETAIL_CHARS).collect();
        detail.push('…');
    }
    match reason {
        None => tracing::info!(
            notification = id.get(),
            kind = %n.kind,
            subject = %n.subject,
            text = %n.text,
            detail = %detail,
            "notification (no notification channel configured)"
        ),
        Some(reason) => tracing::warn!(
            notification = id.get(),
            kind = %n.kind,
            subject = %n.subject,
            text = %n.text,
            detail = %detail,
            reason,
            "notification logged instead of sent"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let r = Retry {
            attempts: 3,
            base_ms: 500,
        };
        assert_eq!(r.backoff(1), Duration::from_millis(500));
        assert_eq!(r.backoff(2), Duration::from_millis(1000));
        assert_eq!(r.backoff(3), Duration::from_millis(2000));
        assert_eq!(r.backoff(40), Duration::from_millis(MAX_BACKOFF_MS));
        assert_eq!(r.backoff(200), Duration::from_millis(MAX_BACKOFF_MS));
    }

    #[test]
    fn retries_stop_on_permanent_failures() {
        let r = Retry {
            attempts: 5,
            base_ms: 0,
        };
        let mut calls = 0;
        let out = r.run(|| {
            calls += 1;
            Err(Failure::permanent("no".into()))
        });
        assert_eq!((calls, out), (1, (1, Some("no".to_owned()))));
        let mut calls = 0;
        let out = r.run(|| {
            calls += 1;
            if calls < 3 {
                Err(Failure::transient("later".into()))
            } else {
                Ok(())
            }
        });
        assert_eq!(out, (3, None));
        let out = r.run(|| Err(Failure::transient("down".into())));
        assert_eq!(out, (5, Some("down".to_owned())));
    }
}
