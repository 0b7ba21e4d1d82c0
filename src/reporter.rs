//! The reporter: a background thread that ships an [`Agent`]'s snapshots to the sidecar and
//! applies the control plane's experiments and models (feature `reporter`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use modelgate::agent::Agent;
//! use modelgate::reporter::{Reporter, ReporterConfig};
//!
//! let agent = Arc::new(Agent::<String>::builder().build()?);
//! let loader = |reference: &str, _location: Option<&str>| Ok(format!("model {reference}"));
//! let reporter = Reporter::spawn(
//!     &agent,
//!     ReporterConfig::new("http://127.0.0.1:7070", "agent-token"),
//!     Some(Arc::new(loader)),
//! )?;
//! // ... serve requests with `agent` ...
//! drop(reporter); // detaches: the thread lives as long as the agent
//! drop(agent); // the last snapshot is delivered (within the flush deadline)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Delivery: nothing lost, nothing counted twice
//!
//! Every interval the thread takes a snapshot (each record lands in exactly one) and wraps it
//! in a [`Report`] with a fresh id. At most two reports are pending:
//!
//! * the *in-flight* one has been sent at least once; it is never changed again and every
//!   retry carries the same id and bytes, so the sidecar, which is idempotent by report id,
//!   counts it once even when an acknowledgement was lost;
//! * the *accumulating* one has never been sent; while the sidecar is unreachable, each new
//!   snapshot merges into it (counters add, histograms and sketches merge exactly).
//!
//! Memory stays bounded (two reports whatever the outage) and no record is lost. Network
//! errors, 408, 429 and 5xx are retried with exponential backoff and jitter; 401 and 403
//! are retried too (a token may be fixed at the sidecar). Other 4xx answers (the sidecar
//! refuses the report itself) drop that report and count it in
//! [`ReporterStatus::reports_dropped`].
//!
//! # Control
//!
//! The thread polls `GET /v1/control` with `If-None-Match`. A new document is applied in
//! this order: every model it names that the agent lacks is loaded through the
//! [`ModelLoader`] (on this thread, never on the request path); then the experiments config,
//! with each variant's model reference, is stored with one atomic swap, which binds the
//! loaded models in the same step. A model that fails to load leaves its variant on the old
//! model; the failure travels in the next report and the document is fetched again at the
//! next poll, so the load is retried.
//!
//! # Shutdown
//!
//! The thread holds only a weak reference to the agent. When the agent is dropped, its last
//! snapshot is handed to the thread, which delivers everything pending within
//! [`ReporterConfig::flush_deadline`] and exits; the drop waits at most that long.
//! [`Reporter::stop`] does the same while the agent lives on.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crate::agent::{Agent, Snapshot};
use crate::model::ModelLoader;
use crate::route::RouterConfig;
use crate::wire::{
    CONTENT_TYPE_CONTROL, CONTENT_TYPE_JSON, CONTENT_TYPE_REPORT, Control, LoadFailure,
    MAX_ERROR_TEXT, MAX_LOAD_ERRORS, Report, WireLimits,
};

/// Longest agent id a reporter accepts: report ids are the agent id, a dash, 12 hex digits of
/// the boot, a dash and up to 20 digits of the sequence number, and must fit the sidecar's
/// 256-byte limit on names.
pub const MAX_AGENT_ID_BYTES: usize = 256 - (1 + 12 + 1 + 20);

/// How the reporter reaches the sidecar.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// The sidecar's base URL, for example `http://127.0.0.1:7070`.
    pub url: String,
    /// The agent token (sent as `Authorization: Bearer`).
    pub token: String,
    /// This agent's id, 1 to [`MAX_AGENT_ID_BYTES`] bytes; `None` makes one from the process
    /// id and a random part.
    pub agent_id: Option<String>,
    /// Time between snapshots (default 10 s).
    pub interval: Duration,
    /// Time between control polls (default 10 s).
    pub control_interval: Duration,
    /// Timeout of each HTTP request (default 5 s).
    pub timeout: Duration,
    /// First retry delay (default 250 ms); doubles up to `retry_max`, with jitter.
    pub retry_base: Duration,
    /// Longest retry delay (default 30 s).
    pub retry_max: Duration,
    /// How long the final flush may take when the agent is dropped (default 5 s).
    pub flush_deadline: Duration,
    /// Send reports in the binary encoding (default) rather than JSON.
    pub binary: bool,
    /// Poll `/v1/control` and apply it (default true).
    pub apply_control: bool,
}

impl ReporterConfig {
    /// Defaults for a sidecar at `url` with the agent token `token`.
    #[must_use]
    pub fn new(url: &str, token: &str) -> Self {
        ReporterConfig {
            url: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            agent_id: None,
            interval: Duration::from_secs(10),
            control_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            retry_base: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
            flush_deadline: Duration::from_secs(5),
            binary: true,
            apply_control: true,
        }
    }
}

/// Errors of the reporter's API (delivery problems are retried, not returned, except by
/// [`Reporter::flush`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReporterError {
    /// A setting is unusable.
    #[error("reporter config: {0}")]
    Config(String),
    /// The thread could not start.
    #[error("cannot start the reporter thread: {0}")]
    Spawn(String),
    /// The thread has stopped (the agent was dropped or `stop` was called).
    #[error("the reporter has stopped")]
    Stopped,
    /// A flush or sync did not finish before its deadline; what is pending stays pending.
    #[error("not delivered before the deadline: {0}")]
    Deadline(String),
}

/// What the reporter has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReporterStatus {
    /// Reports the sidecar acknowledged (including ones it already had).
    pub reports_delivered: u64,
    /// Reports the sidecar refused for good (4xx other than 401/403/408/429).
    pub reports_dropped: u64,
    /// Failed attempts (network errors and retryable statuses).
    pub send_failures: u64,
    /// Control documents applied.
    pub controls_applied: u64,
    /// ETag of the control document in force.
    pub control_etag: Option<String>,
    /// Model loads that failed.
    pub load_failures: u64,
    /// The most recent error, for humans.
    pub last_error: Option<String>,
}

enum Command {
    /// Snapshot now, deliver everything by the deadline, then acknowledge.
    Flush(Instant, Sender<Result<(), ReporterError>>),
    /// Poll control now, then acknowledge.
    SyncControl(Sender<Result<(), ReporterError>>),
    /// The agent's last snapshot: deliver everything by the deadline and exit.
    Final(Box<Snapshot>, Instant, Option<Sender<()>>),
    /// Deliver everything by the deadline and exit (the agent lives on).
    Stop(Instant, Sender<()>),
}

/// Handle on a reporter thread. Dropping it detaches the thread, which runs as long as the
/// agent does.
#[derive(Debug)]
pub struct Reporter {
    commands: Sender<Command>,
    status: Arc<Mutex<ReporterStatus>>,
    thread: Option<JoinHandle<()>>,
    agent_id: String,
    flush_deadline: Duration,
}

impl Reporter {
    /// Starts the reporter thread for `agent`. With a `loader`, control documents that name
    /// models the agent lacks load them; without one, such loads fail (and are reported).
    ///
    /// # Errors
    /// [`ReporterError::Config`] for an unusable URL or durations, [`ReporterError::Spawn`]
    /// when the thread or HTTP client cannot start.
    pub fn spawn<M: Send + Sync + 'static>(
        agent: &Arc<Agent<M>>,
        config: ReporterConfig,
        loader: Option<Arc<dyn ModelLoader<M>>>,
    ) -> Result<Reporter, ReporterError> {
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(ReporterError::Config(format!(
                "url `{}` must start with http:// or https://",
                config.url
            )));
        }
        if config.interval.is_zero() || config.control_interval.is_zero() {
            return Err(ReporterError::Config("intervals must be above zero".into()));
        }
        if config.timeout < Duration::from_millis(50) {
            return Err(ReporterError::Config(
                "timeout must be at least 50 ms".into(),
            ));
        }
        // reqwest is built without a TLS provider of its own; install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| ReporterError::Spawn(e.to_string()))?;
        let agent_id = config.agent_id.clone().unwrap_or_else(new_agent_id);
        if agent_id.is_empty() || agent_id.len() > MAX_AGENT_ID_BYTES {
            // Report ids are `{agent_id}-{boot}-{seq}` and the sidecar refuses names over
            // 256 bytes for good: a longer id would have every report dropped.
            return Err(ReporterError::Config(format!(
                "agent_id must be 1 to {MAX_AGENT_ID_BYTES} bytes, got {}",
                agent_id.len()
            )));
        }
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Mutex::new(ReporterStatus::default()));
        let flush_deadline = config.flush_deadline;
        let mut worker = Worker {
            agent: Arc::downgrade(agent),
            loader,
            client,
            agent_id: agent_id.clone(),
            boot: entropy() >> 16,
            next_seq: 0,
            in_flight: None,
            accumulating: None,
            load_errors: Vec::new(),
            attempts: 0,
            next_attempt: Instant::now(),
            etag: None,
            status: status.clone(),
            config,
        };
        let thread = std::thread::Builder::new()
            .name("modelgate-reporter".into())
            .spawn(move || worker.run(&rx))
            .map_err(|e| ReporterError::Spawn(e.to_string()))?;
        install_drop_hook(agent, tx.clone(), thread.thread().id(), flush_deadline);
        Ok(Reporter {
            commands: tx,
            status,
            thread: Some(thread),
            agent_id,
            flush_deadline,
        })
    }

    /// The agent id reports carry.
    #[must_use]
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// What the reporter has done so far.
    #[must_use]
    pub fn status(&self) -> ReporterStatus {
        lock(&self.status).clone()
    }

    /// Takes a snapshot now and delivers everything pending, waiting at most `deadline`.
    ///
    /// # Errors
    /// [`ReporterError::Deadline`] when something is still pending at the deadline (it stays
    /// pending and is retried), [`ReporterError::Stopped`] after the thread exited.
    pub fn flush(&self, deadline: Duration) -> Result<(), ReporterError> {
        let until = Instant::now() + deadline;
        self.ask(
            |ack| Command::Flush(until, ack),
            deadline + Duration::from_millis(200),
        )
    }

    /// Polls the control document now and applies it when it changed.
    ///
    /// # Errors
    /// As [`Reporter::flush`]; also when the sidecar cannot be reached.
    pub fn sync_control(&self, deadline: Duration) -> Result<(), ReporterError> {
        self.ask(Command::SyncControl, deadline)
    }

    fn ask(
        &self,
        command: impl FnOnce(Sender<Result<(), ReporterError>>) -> Command,
        deadline: Duration,
    ) -> Result<(), ReporterError> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(command(tx))
            .map_err(|_| ReporterError::Stopped)?;
        match rx.recv_timeout(deadline) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ReporterError::Deadline(
                "the reporter did not answer in time".into(),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(ReporterError::Stopped),
        }
    }

    /// Delivers what is pending (a last snapshot included) within the flush deadline, then
    /// stops the thread and waits for it.
    pub fn stop(mut self) {
        let (tx, rx) = mpsc::channel();
        let until = Instant::now() + self.flush_deadline;
        if self.commands.send(Command::Stop(until, tx)).is_ok() {
            let _ = rx.recv_timeout(self.flush_deadline + Duration::from_millis(500));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn install_drop_hook<M>(
    agent: &Agent<M>,
    commands: Sender<Command>,
    reporter_thread: ThreadId,
    deadline: Duration,
) {
    agent.set_drop_hook(Box::new(move |last: Snapshot| {
        if std::thread::current().id() == reporter_thread {
            // The reporter held the last reference: it picks the snapshot up itself.
            let _ = commands.send(Command::Final(
                Box::new(last),
                Instant::now() + deadline,
                None,
            ));
            return;
        }
        let (tx, rx) = mpsc::channel();
        if commands
            .send(Command::Final(
                Box::new(last),
                Instant::now() + deadline,
                Some(tx),
            ))
            .is_ok()
        {
            let _ = rx.recv_timeout(deadline + Duration::from_millis(500));
        }
    }));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Random-enough 64 bits without a random-number crate: the clock, the process id and a
/// stack address, mixed.
fn entropy() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let local = 0u8;
    let mut bytes = Vec::with_capacity(40);
    bytes.extend_from_slice(&nanos.to_le_bytes());
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    bytes.extend_from_slice(&(std::ptr::addr_of!(local) as usize).to_le_bytes());
    bytes.extend_from_slice(&(Instant::now().elapsed().as_nanos()).to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

fn new_agent_id() -> String {
    format!("agent-{}-{:012x}", std::process::id(), entropy() >> 16)
}

/// The outcome of one HTTP attempt.
enum Sent {
    Delivered,
    TooLarge(String),
    Refused(String),
    Retry(String),
}

struct Worker<M> {
    agent: Weak<Agent<M>>,
    loader: Option<Arc<dyn ModelLoader<M>>>,
    client: reqwest::blocking::Client,
    config: ReporterConfig,
    agent_id: String,
    boot: u64,
    next_seq: u64,
    /// Sent at least once: retried unchanged (kept decoded too, to shed its labelled
    /// records if the sidecar finds it too large).
    in_flight: Option<(Report, Vec<u8>)>,
    /// Never sent: later snapshots merge into it.
    accumulating: Option<Report>,
    load_errors: Vec<LoadFailure>,
    attempts: u32,
    next_attempt: Instant,
    etag: Option<String>,
    status: Arc<Mutex<ReporterStatus>>,
}

impl<M: Send + Sync + 'static> Worker<M> {
    fn run(&mut self, commands: &Receiver<Command>) {
        let mut next_snapshot = Instant::now() + self.config.interval;
        let mut next_control = Instant::now();
        loop {
            let now = Instant::now();
            if self.config.apply_control && now >= next_control {
                let _ = self.poll_control();
                next_control = now + self.config.control_interval;
            }
            if now >= next_snapshot {
                if !self.take_snapshot() {
                    // The agent is gone; its drop hook sent the last snapshot, which is
                    // waiting in the channel.
                    next_snapshot = now + Duration::from_secs(3600);
                } else {
                    next_snapshot = now + self.config.interval;
                }
            }
            if self.has_pending() && Instant::now() >= self.next_attempt {
                self.deliver_pending(None);
            }
            let mut wake = next_snapshot.min(next_control);
            if self.has_pending() {
                wake = wake.min(self.next_attempt);
            }
            let wait = wake.saturating_duration_since(Instant::now());
            match commands.recv_timeout(wait) {
                Ok(Command::Flush(deadline, ack)) => {
                    self.take_snapshot();
                    let _ = ack.send(self.deliver_until(deadline));
                }
                Ok(Command::SyncControl(ack)) => {
                    let _ = ack.send(self.poll_control());
                }
                Ok(Command::Final(last, deadline, ack)) => {
                    self.push(*last);
                    let _ = self.deliver_until(deadline);
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                    return;
                }
                Ok(Command::Stop(deadline, ack)) => {
                    self.take_snapshot();
                    let _ = self.deliver_until(deadline);
                    let _ = ack.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Every handle and the agent's hook are gone.
                    let deadline = Instant::now() + self.config.flush_deadline;
                    let _ = self.deliver_until(deadline);
                    return;
                }
            }
        }
    }

    /// Snapshots the agent into the accumulating report; false when the agent is gone.
    fn take_snapshot(&mut self) -> bool {
        let Some(agent) = self.agent.upgrade() else {
            return false;
        };
        let snapshot = agent.snapshot();
        // Dropping `agent` here may run the agent's drop on this thread: its hook then sends
        // `Final` to this thread's own channel, handled on the next turn of the loop.
        drop(agent);
        self.push(snapshot);
        true
    }

    fn push(&mut self, snapshot: Snapshot) {
        let mut report = Report::new(&self.agent_id, "", snapshot);
        report.load_errors = std::mem::take(&mut self.load_errors);
        match &mut self.accumulating {
            Some(pending) => pending.absorb(&report),
            None => {
                // The boot nonce keeps ids unique across restarts of an agent whose id is
                // configured (a repeated id would be acknowledged as a duplicate and lost).
                report.report_id =
                    format!("{}-{:012x}-{}", self.agent_id, self.boot, self.next_seq);
                self.next_seq += 1;
                self.accumulating = Some(report);
            }
        }
    }

    fn has_pending(&self) -> bool {
        self.in_flight.is_some() || self.accumulating.is_some()
    }

    /// Tries the pending reports once each (in-flight first); stops at the first failure
    /// and schedules the retry.
    fn deliver_pending(&mut self, deadline: Option<Instant>) -> bool {
        loop {
            if self.in_flight.is_none() {
                let Some(report) = self.accumulating.take() else {
                    return true;
                };
                let encoded = if self.config.binary {
                    report.to_binary()
                } else {
                    report.to_json()
                };
                match encoded {
                    Ok(bytes) => self.in_flight = Some((report, bytes)),
                    Err(e) => {
                        self.note_error(format!("cannot encode report: {e}"));
                        lock(&self.status).reports_dropped += 1;
                        continue;
                    }
                }
            }
            let Some((report, bytes)) = &self.in_flight else {
                return true;
            };
            let id = report.report_id.clone();
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.send(bytes, timeout) {
                Sent::TooLarge(reason) if !report.snapshot.labelled.records.is_empty() => {
                    // The sidecar refused it before recording its id: the metrics go again
                    // without the labelled records (their count stays).
                    self.note_error(format!(
                        "report {id} too large ({reason}): sending it without its labelled records"
                    ));
                    let mut smaller = report.clone();
                    smaller.snapshot.labelled.records.clear();
                    let encoded = if self.config.binary {
                        smaller.to_binary()
                    } else {
                        smaller.to_json()
                    };
                    match encoded {
                        Ok(bytes) => self.in_flight = Some((smaller, bytes)),
                        Err(_) => self.in_flight = None,
                    }
                }
                Sent::TooLarge(reason) => {
                    self.note_error(format!("sidecar refused report {id}: {reason}"));
                    self.in_flight = None;
                    lock(&self.status).reports_dropped += 1;
                }
                Sent::Delivered => {
                    self.in_flight = None;
                    self.attempts = 0;
                    lock(&self.status).reports_delivered += 1;
                }
                Sent::Refused(reason) => {
                    self.note_error(format!("sidecar refused report {id}: {reason}"));
                    self.in_flight = None;
                    lock(&self.status).reports_dropped += 1;
                }
                Sent::Retry(reason) => {
                    self.note_error(format!("report {id} not delivered: {reason}"));
                    lock(&self.status).send_failures += 1;
                    self.attempts = self.attempts.saturating_add(1);
                    self.next_attempt = Instant::now() + self.backoff();
                    return false;
                }
            }
        }
    }

    /// Delivers everything pending, retrying until `deadline`.
    fn deliver_until(&mut self, deadline: Instant) -> Result<(), ReporterError> {
        loop {
            if self.deliver_pending(Some(deadline)) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                let last = lock(&self.status).last_error.clone().unwrap_or_default();
                return Err(ReporterError::Deadline(last));
            }
            let wait = self
                .next_attempt
                .min(deadline)
                .saturating_duration_since(now);
            std::thread::sleep(wait);
        }
    }

    fn backoff(&self) -> Duration {
        let base = self.config.retry_base.as_secs_f64();
        let cap = self.config.retry_max.as_secs_f64();
        let exp = base * 2f64.powi(self.attempts.min(30) as i32 - 1);
        let delay = exp.min(cap).max(0.0);
        // Equal jitter: half fixed, half uniform, so agents that failed together spread out.
        let unit = (entropy() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(delay / 2.0 + unit * delay / 2.0)
    }

    fn send(&self, body: &[u8], timeout: Option<Duration>) -> Sent {
        let content_type = if self.config.binary {
            CONTENT_TYPE_REPORT
        } else {
            CONTENT_TYPE_JSON
        };
        let mut request = self
            .client
            .post(format!("{}/v1/reports", self.config.url))
            .bearer_auth(&self.config.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.to_vec());
        if let Some(t) = timeout {
            request = request.timeout(t.max(Duration::from_millis(50)).min(self.config.timeout));
        }
        match request.send() {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Sent::Delivered;
                }
                let text = response.text().unwrap_or_default();
                let reason = format!("{status}: {}", truncate(&text, 200));
                match status.as_u16() {
                    413 => Sent::TooLarge(reason),
                    401 | 403 | 408 | 429 => Sent::Retry(reason),
                    400..=499 => Sent::Refused(reason),
                    _ => Sent::Retry(reason),
                }
            }
            Err(e) => Sent::Retry(e.to_string()),
        }
    }

    fn note_error(&self, message: String) {
        tracing::warn!(target: "modelgate::reporter", "{message}");
        lock(&self.status).last_error = Some(message);
    }

    /// Fetches `/v1/control` and applies it when its ETag changed.
    fn poll_control(&mut self) -> Result<(), ReporterError> {
        let accept = if self.config.binary {
            CONTENT_TYPE_CONTROL
        } else {
            CONTENT_TYPE_JSON
        };
        let mut request = self
            .client
            .get(format!("{}/v1/control", self.config.url))
            .bearer_auth(&self.config.token)
            .header(reqwest::header::ACCEPT, accept);
        if let Some(etag) = &self.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, format!("\"{etag}\""));
        }
        let response = match request.send() {
            Ok(r) => r,
            Err(e) => {
                let message = format!("control poll failed: {e}");
                self.note_error(message.clone());
                return Err(ReporterError::Deadline(message));
            }
        };
        let status = response.status();
        if status.as_u16() == 304 {
            return Ok(());
        }
        if !status.is_success() {
            let message = format!("control poll answered {status}");
            self.note_error(message.clone());
            return Err(ReporterError::Deadline(message));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(CONTENT_TYPE_JSON)
            .to_owned();
        let bytes = match response.bytes() {
            Ok(b) => b,
            Err(e) => {
                let message = format!("control body: {e}");
                self.note_error(message.clone());
                return Err(ReporterError::Deadline(message));
            }
        };
        let control = match Control::decode(&content_type, &bytes, &WireLimits::default()) {
            Ok(c) => c,
            Err(e) => {
                let message = format!("control document refused: {e}");
                self.note_error(message.clone());
                return Err(ReporterError::Config(message));
            }
        };
        self.apply(control)
    }

    fn apply(&mut self, control: Control) -> Result<(), ReporterError> {
        let Some(agent) = self.agent.upgrade() else {
            return Err(ReporterError::Stopped);
        };
        let config = effective_config(&control);
        let mut failed = false;
        for experiment in &config.experiments {
            for variant in &experiment.variants {
                let Some(reference) = &variant.model else {
                    continue;
                };
                if agent.has_model(reference) {
                    continue;
                }
                let key = format!("{}/{}", experiment.name, variant.name);
                let location = control.models.get(&key).and_then(|m| m.location.as_deref());
                let loaded = match &self.loader {
                    Some(loader) => loader.load(reference, location).map_err(|e| e.to_string()),
                    None => Err("the agent has no model loader".to_owned()),
                };
                match loaded {
                    Ok(model) => agent.insert_model(reference, model),
                    Err(error) => {
                        failed = true;
                        self.note_error(format!("cannot load `{reference}` for {key}: {error}"));
                        lock(&self.status).load_failures += 1;
                        if self.load_errors.len() < MAX_LOAD_ERRORS {
                            self.load_errors.push(LoadFailure {
                                variant: key,
                                reference: reference.clone(),
                                error: truncate(&error, MAX_ERROR_TEXT).to_owned(),
                            });
                        }
                    }
                }
            }
        }
        // One swap: the config and the models it names change together; a variant whose
        // model failed to load keeps the model it had.
        if let Err(e) = agent.store_experiments(config) {
            let message = format!("control document {} not applied: {e}", control.etag);
            self.note_error(message.clone());
            return Err(ReporterError::Config(message));
        }
        agent.forget_unused_models();
        let mut status = lock(&self.status);
        status.controls_applied += 1;
        status.control_etag = Some(control.etag.clone());
        drop(status);
        // After a failed load the document is fetched again next time, to retry the load.
        self.etag = if failed { None } else { Some(control.etag) };
        Ok(())
    }
}

/// The control's experiments with each variant's model taken from `models` where given.
fn effective_config(control: &Control) -> RouterConfig {
    let mut config = control.experiments.clone();
    for experiment in &mut config.experiments {
        for variant in &mut experiment.variants {
            let key = format!("{}/{}", experiment.name, variant.name);
            if let Some(assignment) = control.models.get(&key) {
                variant.model = Some(assignment.reference.clone());
            }
        }
    }
    config
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
