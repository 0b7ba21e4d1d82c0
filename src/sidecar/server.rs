//! The sidecar's HTTP service (axum on tokio).
//!
//! | route | token | what |
//! |---|---|---|
//! | `POST /v1/reports` | agent | ingest a [`Report`] (JSON or binary); 202 new, 200 duplicate, 400 malformed, invalid or a window end outside [`super::store::EARLIEST_WINDOW_END_MS`] to one day ([`super::store::MAX_WINDOW_AHEAD_MS`]) after the sidecar's clock, 401 bad token, 408 a body not received within `body_read_timeout_s` of its head, 413 oversize, 415 unknown content type or a `Content-Encoding` other than `identity` (compressed bodies are not read), 507 when the report would store more (experiment, variant) series than `max_series` ([`super::store::Store::with_max_series`]; nothing of it is stored, and the agent's reporter retries it, so that raising the limit loses no data), 503 store failure |
//! | `GET /v1/control` | agent or admin | the [`crate::wire::Control`] document with its ETag; 304 on `If-None-Match` |
//! | `PUT /v1/control` | admin | replace experiments and model assignments (JSON `{"experiments": …, "models": …}`; without `models` the assignments in force stay, for the variants that remain); with `If-Match: "etag"`, 412 `precondition_failed` unless that document is still in force |
//! | `GET /v1/status` | admin | control, agents, ingest counters, per-variant summaries |
//! | `GET /v1/experiments` | admin | the experiments config with per-variant totals |
//! | `GET /v1/models` | admin | the model registry |
//! | `GET /v1/runs`, `/v1/runs/{id}`, `/v1/audit` | admin | pipeline runs; the audit log (`?kind=&subject=&limit=&before_id=`) |
//! | `POST /v1/runs/{id}/approve`, `/reject`, `/v1/rollback`, `/v1/retrain` | admin | lifecycle decisions (a JSON body with a `reason`); a retrain during a rollout, or while another retrain is still queued, is 409 `busy` (one asked for during a run starts after it) |
//! | `GET /v1/lifecycle` | admin | the lifecycle: production model, alias history, rollout in progress and its last check, latest drift |
//! | `GET /v1/drift` | admin | drift over time (`?points=&step_s=`), see [`super::dashboard::data::DriftSeries`] |
//! | `GET /v1/drift/features/{feature}` | admin | one feature's reference and current distributions (`?end_ms=`) |
//! | `GET /v1/experiments/{name}/series` | admin | per variant primary metric over time with its always-valid interval (`?points=&step_s=`) |
//! | `GET /v1/dashboard` | none | `{"version", "read_only"}`: whether reads need the admin token |
//! | `GET /`, `/dashboard/{file}` | none | the dashboard ([`super::dashboard`]) |
//! | `GET /healthz` | none | `ok` when the store answers |
//! | `GET /metrics` | none | Prometheus (OpenMetrics) text |
//!
//! With `dashboard_read_only = true` in the config, the `GET` routes marked admin above
//! answer without a token too (the dashboard's read-only view); writes always need it, and
//! `/v1/control` keeps needing the agent or admin token.
//!
//! Connections are served by an accept loop of our own (`axum::serve` has no timeouts): a
//! client that does not send a request head within `header_read_timeout_s` is
//! disconnected, idle keep-alive connections are closed after it too, and every request
//! body must arrive within `body_read_timeout_s` of its head (a report's late body is a
//! 408; other routes answer 400), so slow or silent clients cannot hold connections.
//!
//! Every rejected request is counted by reason (`modelgate_reports_rejected_total`), and
//! SQLite work runs on tokio's blocking pool, never on the async workers. A report is
//! acknowledged only after the transaction that records its id and merges its metrics has
//! committed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router as HttpRouter;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::config::SidecarConfig;
use super::connections;
use super::control::{ControlError, ControlPlane};
use super::dashboard;
use super::dashboard::data::{DataError, DistributionQuery, SeriesQuery};
use super::lifecycle::config::LifecycleConfig;
use super::lifecycle::triggers::TriggerKind;
use super::lifecycle::{Lifecycle, LifecycleError};
use super::notify::Notifier;
use super::store::{AgentSeen, AuditFilter, Ingested, NewAudit, Store, StoreError, VariantTotal};
use crate::route::{Clock, RouterConfig};
use crate::wire::{
    CONTENT_TYPE_CONTROL, CONTENT_TYPE_JSON, ModelAssignment, Report, WireError, WireLimits,
};

/// Errors starting the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime cannot start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// The initial control document is unusable.
    #[error("control: {0}")]
    Control(String),
    /// The lifecycle cannot start.
    #[error("lifecycle: {0}")]
    Lifecycle(String),
}

/// Why reports were turned away (labels of `modelgate_reports_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Rejection {
    Unauthorized,
    TooLarge,
    Malformed,
    UnsupportedMediaType,
    Invalid,
    WindowOutOfRange,
    Version,
    TooManySeries,
    BodyTimeout,
    StoreError,
}

impl Rejection {
    const ALL: [Rejection; 10] = [
        Rejection::Unauthorized,
        Rejection::TooLarge,
        Rejection::Malformed,
        Rejection::UnsupportedMediaType,
        Rejection::Invalid,
        Rejection::WindowOutOfRange,
        Rejection::Version,
        Rejection::TooManySeries,
        Rejection::BodyTimeout,
        Rejection::StoreError,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Rejection::Unauthorized => "unauthorized",
            Rejection::TooLarge => "too_large",
            Rejection::Malformed => "malformed",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::Invalid => "invalid",
            Rejection::WindowOutOfRange => "window_out_of_range",
            Rejection::Version => "version",
            Rejection::TooManySeries => "too_many_series",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::StoreError => "store_error",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Rejection::Unauthorized => StatusCode::UNAUTHORIZED,
            Rejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Malformed
            | Rejection::Invalid
            | Rejection::WindowOutOfRange
            | Rejection::Version => StatusCode::BAD_REQUEST,
            Rejection::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // Well-formed and valid, but the store will not take more series: sending it
            // again cannot help until an operator raises the limit.
            Rejection::TooManySeries => StatusCode::INSUFFICIENT_STORAGE,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::StoreError => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Default)]
struct IngestCounters {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
}

impl IngestCounters {
    fn reject(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> IngestSummary {
        IngestSummary {
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: Rejection::ALL
                .iter()
                .map(|r| {
                    (
                        r.as_str().to_owned(),
                        self.rejected[*r as usize].load(Ordering::Relaxed),
                    )
                })
                .collect(),
        }
    }
}

struct AppState {
    store: Arc<Store>,
    control: Arc<ControlPlane>,
    lifecycle: Option<LifecycleHandle>,
    agent_token: String,
    admin_token: String,
    read_only: bool,
    clock: Arc<dyn Clock>,
    limits: WireLimits,
    body_read_timeout: std::time::Duration,
    counters: IngestCounters,
    started: std::time::Instant,
}

/// A sidecar serving on its own runtime thread; dropping it (or [`RunningSidecar::stop`])
/// shuts the service down gracefully.
pub struct RunningSidecar {
    state: Arc<AppState>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    store: Arc<Store>,
}

impl std::fmt::Debug for RunningSidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSidecar")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningSidecar {
    /// The lifecycle, when configured (the demo and tests drive it directly).
    #[must_use]
    pub fn lifecycle(&self) -> Option<&Arc<Lifecycle>> {
        self.state.lifecycle.as_ref().map(|h| &h.lifecycle)
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store (for in-process readers such as the demo and tests).
    #[must_use]
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stops accepting, finishes requests in flight, and waits.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        // First cut short what the lifecycle waits for (a training, a grace period), which
        // an admin request being drained may be waiting on too.
        if let Some(lifecycle) = &self.state.lifecycle {
            lifecycle.lifecycle.request_stop();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(lifecycle) = &self.state.lifecycle {
            lifecycle.stop();
        }
    }
}

impl Drop for RunningSidecar {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

fn open_state(config: &SidecarConfig) -> Result<Arc<AppState>, ServeError> {
    let store = Arc::new(
        Store::open_with_clock(&config.database, config.durability, config.clock.clone())?
            .with_max_series(config.max_series),
    );
    let control = Arc::new(
        ControlPlane::open(store.clone(), &config.experiments)
            .map_err(|e| ServeError::Control(e.to_string()))?,
    );
    let lifecycle = match &config.lifecycle {
        Some(l) => Some(start_lifecycle(l, &store, &control, config)?),
        None => None,
    };
    Ok(Arc::new(AppState {
        store,
        control,
        lifecycle,
        agent_token: config.agent_token.clone(),
        admin_token: config.admin_token.clone(),
        read_only: config.dashboard_read_only,
        clock: config.clock.clone(),
        limits: WireLimits {
            max_bytes: config.max_body_bytes,
            ..WireLimits::default()
        },
        body_read_timeout: config.body_read_timeout,
        counters: IngestCounters::default(),
        started: std::time::Instant::now(),
    }))
}

/// How long report ids are remembered: a retry older than this would count twice.
pub const REPORT_ID_HORIZON_MS: i64 = 7 * 24 * super::store::HOUR_MS;
/// Minute windows older than this are compacted to hours.
pub const COMPACT_AFTER_MS: i64 = 2 * super::store::HOUR_MS;

/// What one maintenance pass did: each part's outcome on its own.
#[derive(Debug)]
pub struct Maintenance {
    /// Minute windows compacted into hours, or why compaction failed.
    pub compacted: Result<usize, StoreError>,
    /// Report ids forgotten, or why pruning failed.
    pub pruned: Result<usize, StoreError>,
}

/// One maintenance pass at `now_ms`: compacts minute windows older than
/// [`COMPACT_AFTER_MS`] and forgets report ids older than [`REPORT_ID_HORIZON_MS`]. The two
/// are independent: pruning runs even when compaction fails (a stored window that cannot
/// be compacted must not keep report ids forever), and both outcomes are returned.
pub fn maintain_once(store: &Store, now_ms: i64) -> Maintenance {
    Maintenance {
        compacted: store.compact(now_ms.saturating_sub(COMPACT_AFTER_MS)),
        pruned: store.prune_report_ids(now_ms.saturating_sub(REPORT_ID_HORIZON_MS)),
    }
}

/// Runs [`maintain_once`] every ten minutes and logs each part's outcome.
async fn maintain(store: Arc<Store>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        let store = store.clone();
        let now = now_ms();
        let done = tokio::task::spawn_blocking(move || maintain_once(&store, now)).await;
        let Ok(done) = done else {
            tracing::warn!("maintenance task failed");
            continue;
        };
        match done.compacted {
            Ok(0) => {}
            Ok(n) => tracing::info!("maintenance: {n} minute windows compacted"),
            Err(e) => tracing::warn!("maintenance: compaction failed: {e}"),
        }
        match done.pruned {
            Ok(0) => {}
            Ok(n) => tracing::info!("maintenance: {n} report ids forgotten"),
            Err(e) => tracing::warn!("maintenance: report id pruning failed: {e}"),
        }
    }
}

fn app(state: Arc<AppState>) -> HttpRouter {
    let body_read_timeout = state.body_read_timeout;
    HttpRouter::new()
        .route("/v1/reports", axum::routing::post(post_report))
        .route("/v1/control", get(get_control).put(put_control))
        .route("/v1/status", get(get_status))
        .route("/v1/experiments", get(get_experiments))
        .route("/v1/models", get(get_models))
        .route("/v1/runs", get(get_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/approve", axum::routing::post(post_approve))
        .route("/v1/runs/{id}/reject", axum::routing::post(post_reject))
        .route("/v1/rollback", axum::routing::post(post_rollback))
        .route("/v1/retrain", axum::routing::post(post_retrain))
        .route("/v1/audit", get(get_audit))
        .route("/v1/lifecycle", get(get_lifecycle))
        .route("/v1/drift", get(get_drift))
        .route("/v1/drift/features/{feature}", get(get_drift_feature))
        .route("/v1/experiments/{name}/series", get(get_experiment_series))
        .route("/v1/dashboard", get(get_dashboard))
        .route("/", get(dashboard::index))
        .route("/dashboard/{file}", get(dashboard::file))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(axum::middleware::map_request_with_state(
            body_read_timeout,
            connections::with_body_deadline,
        ))
}

/// Starts the service on a runtime thread of its own and returns once it listens.
///
/// # Errors
/// [`ServeError`] when the store, the address or the runtime fail.
pub fn spawn(config: &SidecarConfig) -> Result<RunningSidecar, ServeError> {
    let state = open_state(config)?;
    let store = state.store.clone();
    let kept = state.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("modelgate-sidecar")
        .build()
        .map_err(ServeError::Runtime)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let header_timeout = config.header_read_timeout;
    let thread = std::thread::Builder::new()
        .name("modelgate-sidecar-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                let maintenance = tokio::spawn(maintain(state.store.clone()));
                // Graceful: requests in flight finish; connections of clients that stay
                // around (idle or still sending a head) do not hold the shutdown more than a
                // few seconds, whatever the header timeout.
                let (stopping_tx, mut grace_rx) = tokio::sync::watch::channel(false);
                let serve = connections::serve(listener, app(state), header_timeout, async move {
                    let _ = rx.await;
                    let _ = stopping_tx.send(true);
                });
                tokio::select! {
                    () = serve => {}
                    () = async move {
                        let _ = grace_rx.wait_for(|s| *s).await;
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    } => {}
                }
                maintenance.abort();
            });
        })
        .map_err(ServeError::Runtime)?;
    Ok(RunningSidecar {
        state: kept,
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
        store,
    })
}

/// Serves until Ctrl-C or SIGTERM (the `modelgate serve` command); `on_listen` receives the
/// bound address.
///
/// # Errors
/// [`ServeError`] when the store, the address or the runtime fail.
pub fn serve_forever(
    config: &SidecarConfig,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let state = open_state(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("modelgate-sidecar")
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        on_listen(addr);
        tokio::spawn(maintain(state.store.clone()));
        let stopping = state.clone();
        // Requests in flight finish; a client still sending a head holds the shutdown at
        // most the header timeout.
        connections::serve(
            listener,
            app(state.clone()),
            config.header_read_timeout,
            async move {
                shutdown_signal().await;
                // Cut short the lifecycle's waits now, not after the requests in flight
                // (an approval may be in its grace period).
                if let Some(lifecycle) = &stopping.lifecycle {
                    lifecycle.lifecycle.request_stop();
                }
            },
        )
        .await;
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(lifecycle) = &state.lifecycle {
                lifecycle.stop();
            }
        })
        .await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Compares in time independent of where the strings differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(g ^ e);
    }
    diff == 0
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let prefix = b"Bearer ";
    (value.len() > prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &value[prefix.len()..])
}

fn is_agent(state: &AppState, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|t| same_secret(t, state.agent_token.as_bytes()))
}

fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|t| same_secret(t, state.admin_token.as_bytes()))
}

/// Whether a read of the admin API is allowed: the admin token, or read-only viewing
/// enabled in the config. A token that is present and wrong is refused even then, so
/// that a mistyped token shows up as an error instead of a silent read-only view.
fn can_read(state: &AppState, headers: &HeaderMap) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return is_admin(state, headers);
    }
    state.read_only
}

#[derive(Serialize)]
struct Problem<'a> {
    error: &'a str,
    reason: String,
}

fn problem(status: StatusCode, error: &str, reason: String) -> Response {
    let mut response = (status, axum::Json(Problem { error, reason })).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"modelgate\""),
        );
    }
    response
}

fn unauthorized() -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token".into(),
    )
}

fn reject(state: &AppState, why: Rejection, reason: String) -> Response {
    state.counters.reject(why);
    problem(why.status(), why.as_str(), reason)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("store task failed: {e}")),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn too_large(state: &AppState, size: Option<u64>) -> Response {
    let limit = state.limits.max_bytes;
    let reason = match size {
        Some(size) => format!("body of {size} bytes is over the limit of {limit} bytes"),
        None => format!("body is over the limit of {limit} bytes"),
    };
    reject(state, Rejection::TooLarge, reason)
}

/// The request's `Content-Encoding` when it names anything but `identity` (the only
/// encoding reports are read in), as sent; `None` when absent or `identity`.
fn unsupported_encoding(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&[u8]> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let identity = values.iter().all(|v| {
        std::str::from_utf8(v).is_ok_and(|v| {
            v.split(',')
                .all(|coding| coding.trim().eq_ignore_ascii_case("identity"))
        })
    });
    (!identity).then(|| {
        values
            .iter()
            .map(|v| String::from_utf8_lossy(v))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

async fn post_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !is_agent(&state, &headers) {
        state.counters.reject(Rejection::Unauthorized);
        return unauthorized();
    }
    if let Some(encoding) = unsupported_encoding(&headers) {
        let mut response = reject(
            &state,
            Rejection::UnsupportedMediaType,
            format!(
                "content encoding `{encoding}` is not supported: send the report \
                 uncompressed (identity)"
            ),
        );
        response.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        return response;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.limits.max_bytes as u64) {
        return too_large(&state, declared);
    }
    let bytes = match axum::body::to_bytes(body, state.limits.max_bytes).await {
        Ok(b) => b,
        Err(e) => {
            if let Some(timeout) = connections::body_timeout(&e) {
                // The rest of the body may still come: the connection cannot carry another
                // request, so it is closed after this answer.
                let mut response = reject(
                    &state,
                    Rejection::BodyTimeout,
                    format!("{timeout}: send it faster"),
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            let text = format!("{e} {:?}", std::error::Error::source(&e));
            if text.contains("length limit") {
                return too_large(&state, None);
            }
            return reject(
                &state,
                Rejection::Malformed,
                format!("cannot read body: {e}"),
            );
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let report = match Report::decode(content_type, &bytes, &state.limits) {
        Ok(r) => r,
        Err(e) => {
            let why = match &e {
                WireError::TooLarge { .. } => Rejection::TooLarge,
                WireError::UnsupportedContentType(_) => Rejection::UnsupportedMediaType,
                WireError::Malformed { .. } => Rejection::Malformed,
                WireError::Version { .. } => Rejection::Version,
                _ => Rejection::Invalid,
            };
            return reject(&state, why, e.to_string());
        }
    };
    let store = state.store.clone();
    let received = now_ms();
    let ingested = tokio::task::spawn_blocking(move || store.ingest(&report, received)).await;
    match ingested {
        Err(e) => {
            tracing::error!("ingest task failed: {e}");
            reject(&state, Rejection::StoreError, "ingest task failed".into())
        }
        Ok(Ok(Ingested::Accepted)) => {
            state.counters.accepted.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"status": "accepted"})),
            )
                .into_response()
        }
        Ok(Ok(Ingested::Duplicate)) => {
            state.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"status": "duplicate"})),
            )
                .into_response()
        }
        // The report itself is unusable (a window or counter out of range): retrying the
        // same bytes cannot help, so it is a 400.
        Ok(Err(StoreError::Invalid(reason))) => reject(&state, Rejection::Invalid, reason),
        Ok(Err(StoreError::WindowOutOfRange(reason))) => {
            reject(&state, Rejection::WindowOutOfRange, reason)
        }
        Ok(Err(e @ StoreError::TooManySeries { .. })) => {
            reject(&state, Rejection::TooManySeries, e.to_string())
        }
        Ok(Err(e)) => {
            tracing::error!("ingest failed: {e}");
            reject(&state, Rejection::StoreError, e.to_string())
        }
    }
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    let Some(value) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    value.split(',').any(|candidate| {
        let c = candidate.trim();
        let c = c.strip_prefix("W/").unwrap_or(c);
        c == "*" || c.trim_matches('"') == etag
    })
}

async fn get_control(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !is_agent(&state, &headers) && !is_admin(&state, &headers) {
        return unauthorized();
    }
    let doc = state.control.current();
    let etag = format!("\"{}\"", doc.control.etag);
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if etag_matches(&headers, &doc.control.etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    let wants_binary = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(CONTENT_TYPE_CONTROL));
    let (content_type, body) = if wants_binary {
        (CONTENT_TYPE_CONTROL, doc.binary.clone())
    } else {
        (CONTENT_TYPE_JSON, doc.json.clone())
    };
    (
        StatusCode::OK,
        [
            (header::ETAG, etag_value),
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        ],
        body,
    )
        .into_response()
}

/// Body of `PUT /v1/control`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlUpdate {
    experiments: RouterConfig,
    /// `None` keeps the assignments in force (for the variants that remain).
    #[serde(default)]
    models: Option<BTreeMap<String, ModelAssignment>>,
    #[serde(default)]
    reason: Option<String>,
}

async fn put_control(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_admin(&state, &headers) {
        return unauthorized();
    }
    let update: ControlUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return problem(StatusCode::BAD_REQUEST, "malformed", e.to_string());
        }
    };
    if let Some(handle) = &state.lifecycle
        && let Err(why) = handle.lifecycle.check_control(&update.experiments)
    {
        return problem(
            StatusCode::CONFLICT,
            "lifecycle_conflict",
            format!("{why}: the lifecycle steers it (change [lifecycle] first)"),
        );
    }
    let actor = match update.reason {
        Some(reason) if !reason.is_empty() => format!("admin ({reason})"),
        _ => "admin".to_owned(),
    };
    let if_match = match if_match(&headers) {
        Ok(etag) => etag,
        Err(reason) => return problem(StatusCode::BAD_REQUEST, "bad_if_match", reason),
    };
    let control = state.control.clone();
    let replaced = tokio::task::spawn_blocking(move || {
        control.replace_checked(
            update.experiments,
            update.models,
            if_match.as_deref(),
            &actor,
        )
    })
    .await;
    match replaced {
        Ok(Ok((control, changed))) => {
            axum::Json(serde_json::json!({"etag": control.etag, "changed": changed}))
                .into_response()
        }
        Ok(Err(
            ControlError::Invalid(reason) | ControlError::Store(StoreError::Invalid(reason)),
        )) => problem(StatusCode::BAD_REQUEST, "invalid", reason),
        Ok(Err(e @ ControlError::Stale { .. })) => problem(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            e.to_string(),
        ),
        Ok(Err(e)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            e.to_string(),
        ),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("control task failed: {e}"),
        ),
    }
}

/// The etag of an `If-Match` header: `None` without one or for `*` (any document), the
/// etag without its quotes for one strong etag. A list or a weak etag is refused: a write
/// is conditional on one exact document.
fn if_match(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| "If-Match must be ASCII".to_owned())?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(etag) if !etag.is_empty() && !etag.contains('"') => Ok(Some(etag.to_owned())),
        _ => Err(format!(
            "If-Match must be one quoted etag, as GET /v1/control's ETag header gives, or *; got {text}"
        )),
    }
}

/// Ingest counters in `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestSummary {
    /// Reports accepted since start.
    pub accepted: u64,
    /// Duplicates acknowledged and not counted again.
    pub duplicates: u64,
    /// Rejections by reason.
    pub rejected: BTreeMap<String, u64>,
}

/// One variant's merged totals, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    /// Experiment.
    pub experiment: String,
    /// Variant.
    pub variant: String,
    /// Model most recently reported.
    pub model: Option<String>,
    /// Calls.
    pub requests: u64,
    /// Failed calls.
    pub errors: u64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    /// Latency median, ms.
    pub latency_p50_ms: Option<f64>,
    /// Latency 99th percentile, ms.
    pub latency_p99_ms: Option<f64>,
    /// Binary outcome successes.
    pub successes: u64,
    /// Binary outcome trials.
    pub trials: u64,
    /// Continuous outcomes recorded.
    pub outcome_count: u64,
    /// Their mean.
    pub outcome_mean: Option<f64>,
    /// Predictions recorded.
    pub predictions: u64,
    /// Feature rows recorded.
    pub feature_rows: u64,
}

impl VariantSummary {
    /// Summarises a stored total.
    #[must_use]
    pub fn of(total: &VariantTotal) -> Self {
        let m = &total.metrics;
        let errors = m.errors.total();
        VariantSummary {
            experiment: total.experiment.clone(),
            variant: total.variant.clone(),
            model: total.model.clone(),
            requests: m.requests,
            errors,
            error_rate: if m.requests == 0 {
                0.0
            } else {
                errors as f64 / m.requests as f64
            },
            latency_p50_ms: m.latency.quantile(0.5).map(|n| n / 1e6),
            latency_p99_ms: m.latency.quantile(0.99).map(|n| n / 1e6),
            successes: m.binary.successes,
            trials: m.binary.trials,
            outcome_count: m.outcome.count,
            outcome_mean: (m.outcome.count > 0).then_some(m.outcome.mean),
            predictions: m.predictions.as_ref().map_or(0, |p| p.count()),
            feature_rows: m.feature_rows,
        }
    }
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// modelgate version.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// ETag of the control document in force.
    pub control_etag: String,
    /// Experiments configured.
    pub experiments: Vec<String>,
    /// Agents heard from.
    pub agents: Vec<AgentSeen>,
    /// Ingest counters since start.
    pub ingest: IngestSummary,
    /// Per-variant totals over all stored windows.
    pub variants: Vec<VariantSummary>,
}

async fn totals(state: &AppState) -> Result<Vec<VariantTotal>, String> {
    let store = state.store.clone();
    blocking(move || store.totals(None, i64::MIN, i64::MAX)).await
}

async fn get_status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !can_read(&state, &headers) {
        return unauthorized();
    }
    let store = state.store.clone();
    let agents = match blocking(move || store.agents()).await {
        Ok(a) => a,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    };
    let totals = match totals(&state).await {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    };
    let doc = state.control.current();
    axum::Json(Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_s: state.started.elapsed().as_secs(),
        control_etag: doc.control.etag.clone(),
        experiments: doc
            .control
            .experiments
            .experiments
            .iter()
            .map(|e| e.name.clone())
            .collect(),
        agents,
        ingest: state.counters.summary(),
        variants: totals.iter().map(VariantSummary::of).collect(),
    })
    .into_response()
}

async fn get_experiments(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !can_read(&state, &headers) {
        return unauthorized();
    }
    let totals = match totals(&state).await {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    };
    let doc = state.control.current();
    axum::Json(serde_json::json!({
        "etag": doc.control.etag,
        "config": doc.control.experiments,
        "models": doc.control.models,
        "variants": totals.iter().map(VariantSummary::of).collect::<Vec<_>>(),
        "split": dashboard::data::traffic_split(&doc.control.experiments, state.clock.clone()),
    }))
    .into_response()
}

async fn get_models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !can_read(&state, &headers) {
        return unauthorized();
    }
    let store = state.store.clone();
    match blocking(move || store.models()).await {
        Ok(models) => axum::Json(serde_json::json!({ "models": models })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let store = state.store.clone();
    match blocking(move || store.reports_accepted()).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let totals = match totals(&state).await {
        Ok(t) => t,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response();
        }
    };
    let (model, drift) = match &state.lifecycle {
        Some(h) => (h.lifecycle.config().model.clone(), h.lifecycle.last_drift()),
        None => (String::new(), Vec::new()),
    };
    match super::prometheus::render(&state.counters.summary(), &totals, &model, &drift) {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(super::prometheus::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

enum LifecycleCommand {
    Retrain(String),
    Stop,
}

/// The lifecycle and its thread.
struct LifecycleHandle {
    lifecycle: Arc<Lifecycle>,
    commands: std::sync::mpsc::Sender<LifecycleCommand>,
    /// Set when a manual retrain is queued, cleared when the lifecycle thread takes it: a
    /// second request in between (a double click) is refused rather than queued behind it.
    /// A request while a run is in progress is queued and starts after it.
    retrain_queued: Arc<std::sync::atomic::AtomicBool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LifecycleHandle {
    fn stop(&self) {
        // Cut short a training or a retry wait in progress, then end the thread.
        self.lifecycle.request_stop();
        let _ = self.commands.send(LifecycleCommand::Stop);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn start_lifecycle(
    config: &LifecycleConfig,
    store: &Arc<Store>,
    control: &Arc<ControlPlane>,
    sidecar: &SidecarConfig,
) -> Result<LifecycleHandle, ServeError> {
    let audit_store = store.clone();
    let hook: super::notify::DeliveryHook = Arc::new(move |d: &super::notify::Delivery| {
        let entry = NewAudit {
            actor: "sidecar".into(),
            kind: format!("notify.{}", d.channel.as_str()),
            subject: d.subject.clone(),
            detail: serde_json::to_value(d).unwrap_or_default(),
        };
        if let Err(e) = audit_store.audit(&entry) {
            tracing::warn!("notification audit row not written: {e}");
        }
    });
    let notifier = Notifier::with_hook(config.notify.clone(), hook)
        .map_err(|e| ServeError::Lifecycle(e.to_string()))?;
    let lifecycle = Arc::new(
        Lifecycle::new(
            config.clone(),
            store.clone(),
            control.clone(),
            notifier,
            sidecar.clock.clone(),
        )
        .map_err(|e| ServeError::Lifecycle(e.to_string()))?,
    );
    let recovered = lifecycle
        .recover()
        .map_err(|e| ServeError::Lifecycle(e.to_string()))?;
    if !recovered.is_empty() {
        tracing::warn!("runs {recovered:?} were interrupted by a restart and are marked failed");
    }
    let resuming = lifecycle.resumable_runs();
    if !resuming.is_empty() {
        tracing::warn!("runs {resuming:?} were interrupted during training and will be resumed");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let retrain_queued = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let queued_flag = retrain_queued.clone();
    let interval = std::time::Duration::from_secs(config.triggers.check_interval_s);
    let worker = lifecycle.clone();
    let thread = std::thread::Builder::new()
        .name("modelgate-lifecycle".into())
        .spawn(move || {
            for outcome in worker.resume_interrupted() {
                match outcome {
                    Ok(outcome) => tracing::info!(
                        "resumed run {} ended {}: {}",
                        outcome.run_id,
                        outcome.state,
                        outcome.reason
                    ),
                    // Logged and audited where it happened: the run waits for the next start.
                    Err(LifecycleError::Interrupted { .. }) => {}
                    Err(e) => tracing::warn!("resuming a run failed: {e}"),
                }
            }
            loop {
                match rx.recv_timeout(interval) {
                    Ok(LifecycleCommand::Stop)
                    | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    Ok(LifecycleCommand::Retrain(reason)) => {
                        // Taken off the queue: a new request may queue the next one.
                        queued_flag.store(false, std::sync::atomic::Ordering::Release);
                        match worker.run(TriggerKind::Manual, serde_json::json!({"reason": reason}))
                        {
                            Ok(outcome) => tracing::info!(
                                "manual run {} ended {}: {}",
                                outcome.run_id,
                                outcome.state,
                                outcome.reason
                            ),
                            // Logged and audited where it happened: the run waits for the next start.
                            Err(LifecycleError::Interrupted { .. }) => {}
                            Err(e) => tracing::warn!("manual retrain: {e}"),
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => match worker.tick() {
                        Ok(Some(outcome)) => tracing::info!(
                            "run {} ended {}: {}",
                            outcome.run_id,
                            outcome.state,
                            outcome.reason
                        ),
                        Ok(None) => {}
                        // Logged and audited where it happened: the run waits for the next start.
                        Err(LifecycleError::Interrupted { .. }) => {}
                        Err(e) => tracing::warn!("lifecycle check failed: {e}"),
                    },
                }
            }
        })
        .map_err(|e| ServeError::Lifecycle(e.to_string()))?;
    Ok(LifecycleHandle {
        lifecycle,
        commands: tx,
        retrain_queued,
        thread: std::sync::Mutex::new(Some(thread)),
    })
}

fn no_lifecycle() -> Response {
    problem(
        StatusCode::CONFLICT,
        "no_lifecycle",
        "this sidecar has no [lifecycle] section in its config".into(),
    )
}

fn lifecycle_error(e: LifecycleError) -> Response {
    match e {
        LifecycleError::UnknownRun(_) => problem(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        LifecycleError::Refused(reason) => problem(StatusCode::CONFLICT, "refused", reason),
        LifecycleError::Busy => problem(StatusCode::CONFLICT, "busy", e.to_string()),
        LifecycleError::Vetoed { .. } => problem(StatusCode::CONFLICT, "vetoed", e.to_string()),
        // A value the store refuses (a reason too long, say) is the request's fault.
        LifecycleError::Store(StoreError::Invalid(reason))
        | LifecycleError::Control(
            ControlError::Invalid(reason) | ControlError::Store(StoreError::Invalid(reason)),
        ) => problem(StatusCode::BAD_REQUEST, "invalid", reason),
        // The store could not take the change (a full disk, a locked database): the request
        // was fine, the service is not, and a retry may work.
        LifecycleError::Store(_) | LifecycleError::Control(ControlError::Store(_)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            e.to_string(),
        ),
        other => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "lifecycle_error",
            other.to_string(),
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
struct LimitQuery {
    limit: Option<u32>,
}

async fn get_runs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LimitQuery>,
) -> Response {
    if !can_read(&state, &headers) {
        return unauthorized();
    }
    let store = state.store.clone();
    match blocking(move || store.runs(q.limit.unwrap_or(50).min(1000))).await {
        Ok(runs) => axum::Json(serde_json::json!({ "runs": runs })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    }
}

async fn get_run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Response {
    if !can_read(&state, &headers) {
        return unauthorized();
    }
    let store = state.store.clone();
    match blocking(move || store.run(id)).await {
        Ok(Some(run)) => axum::Json(run).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, "not_found", format!("no run {id}")),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    }
}

/// Body of the review, rollback and retrain calls.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    to: Option<u32>,
}

fn parse_decision(body: &Bytes) -> Result<DecisionRequest, Box<Response>> {
    let request: DecisionRequest = serde_json::from_slice(body)
        .map_err(|e| Box::new(problem(StatusCode::BAD_REQUEST, "malformed", e.to_string())))?;
    if request.reason.trim().is_empty() {
        return Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            "invalid",
            "a reason is required".into(),
        )));
    }
    Ok(request)
}

/// What every write call of the lifecycle checks first: the admin token, a lifecycle, a
/// body with a reason. Gives the lifecycle, the request and the actor's name.
fn decision_call(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Arc<Lifecycle>, DecisionRequest, String), Box<Response>> {
    if !is_admin(state, headers) {
        return Err(Box::new(unauthorized()));
    }
    let Some(handle) = &state.lifecycle else {
        return Err(Box::new(no_lifecycle()));
    };
    let request = parse_decision(body)?;
    let actor = actor_of(&request);
    Ok((handle.lifecycle.clone(), request, actor))
}

fn actor_of(request: &DecisionRequest) -> String {
    match request.actor.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => {
            format!("admin:{}", name.chars().take(64).collect::<String>())
        }
        _ => "admin".to_owned(),
    }
}

async fn review(
    state: Arc<AppState>,
    headers: HeaderMap,
    id: i64,
    body: Bytes,
    approve: bool,
) -> Response {
    let (lifecycle, request, actor) = match decision_call(&state, &headers, &body) {
        Ok(call) => call,
        Err(response) => return *response,
    };
    let store = state.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        if approve {
            lifecycle.approve(id, &actor, &request.reason)
        } else {
            lifecycle.reject(id, &actor, &request.reason)
        }
        // The run's state now: an approval that starts a gradual rollout leaves the run
        // `running` until the rollout ends.
        .map(|()| store.run(id).ok().flatten().map(|run| run.state))
    })
    .await;
    match done {
        Ok(Ok(now)) => axum::Json(serde_json::json!({
            "run_id": id,
            "state": now.unwrap_or_else(|| if approve { "succeeded" } else { "rejected" }.into()),
        }))
        .into_response(),
        Ok(Err(e)) => lifecycle_error(e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn post_approve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Response {
    review(state, headers, id, body, true).await
}

async fn post_reject(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Response {
    review(state, headers, id, body, false).await
}

async fn post_rollback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lifecycle, request, actor) = match decision_call(&state, &headers, &body) {
        Ok(call) => call,
        Err(response) => return *response,
    };
    let done = tokio::task::spawn_blocking(move || {
        lifecycle.rollback(request.to, &actor, &request.reason)
    })
    .await;
    match done {
        Ok(Ok(version)) => axum::Json(serde_json::json!({"production": version})).into_response(),
        Ok(Err(e)) => lifecycle_error(e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn post_retrain(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, request, actor) = match decision_call(&state, &headers, &body) {
        Ok(call) => call,
        Err(response) => return *response,
    };
    let Some(handle) = &state.lifecycle else {
        return no_lifecycle();
    };
    if let Some(why) = handle.lifecycle.busy() {
        return problem(StatusCode::CONFLICT, "busy", why);
    }
    // Check and claim in one step, so that two requests at once queue one run; a request
    // while a run is in progress queues (the run took its command off the queue).
    if handle
        .retrain_queued
        .compare_exchange(
            false,
            true,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        )
        .is_err()
    {
        return problem(
            StatusCode::CONFLICT,
            "busy",
            "a retrain is already queued: it starts when the run in progress ends".into(),
        );
    }
    let reason = format!("{actor} asked: {}", request.reason);
    match handle.commands.send(LifecycleCommand::Retrain(reason)) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"queued": true})),
        )
            .into_response(),
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopped",
            "the lifecycle thread has stopped".into(),
        ),
    }
}

async fn get_audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(filter): axum::extract::Query<AuditFilter>,
) -> Response {
    if !can_read(&state, &headers) {
        return unauthorized();
    }
    let store = state.store.clone();
    match blocking(move || store.audit_log(&filter)).await {
        Ok(rows) => axum::Json(serde_json::json!({ "audit": rows })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    }
}

fn data_error(e: DataError) -> Response {
    match e {
        DataError::BadQuery(reason) => problem(StatusCode::BAD_REQUEST, "bad_query", reason),
        DataError::NotFound(reason) => problem(StatusCode::NOT_FOUND, "not_found", reason),
        other => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            other.to_string(),
        ),
    }
}

fn bad_query(e: &axum::extract::rejection::QueryRejection) -> Response {
    problem(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
}

/// A dashboard view's query string, or its rejection.
type ViewQuery<Q> = Result<axum::extract::Query<Q>, axum::extract::rejection::QueryRejection>;

/// What every dashboard view checks first: read access (the admin token, or read-only
/// viewing), then a well-formed query. Gives the query.
fn view_call<Q>(
    state: &AppState,
    headers: &HeaderMap,
    query: ViewQuery<Q>,
) -> Result<Q, Box<Response>> {
    if !can_read(state, headers) {
        return Err(Box::new(unauthorized()));
    }
    query
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| Box::new(bad_query(&e)))
}

/// [`view_call`] for views of the lifecycle: also gives the lifecycle, or the 409 saying
/// there is none.
fn lifecycle_view<Q>(
    state: &AppState,
    headers: &HeaderMap,
    query: ViewQuery<Q>,
) -> Result<(Arc<Lifecycle>, Q), Box<Response>> {
    let query = view_call(state, headers, query)?;
    let handle = state
        .lifecycle
        .as_ref()
        .ok_or_else(|| Box::new(no_lifecycle()))?;
    Ok((handle.lifecycle.clone(), query))
}

async fn data_blocking<T: Serialize + Send + 'static>(
    f: impl FnOnce() -> Result<T, DataError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => data_error(e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `GET /v1/lifecycle`: what the dashboard's overview and experiments pages show about the
/// model's lifecycle.
async fn get_lifecycle(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !can_read(&state, &headers) {
        return unauthorized();
    }
    let Some(handle) = &state.lifecycle else {
        return no_lifecycle();
    };
    let lifecycle = handle.lifecycle.clone();
    let store = state.store.clone();
    data_blocking(move || {
        let config = lifecycle.config();
        let production = store.alias(&config.model, "production")?;
        let history = store.alias_history(&config.model)?;
        let since = production.as_ref().and_then(|p| {
            history
                .iter()
                .filter(|c| c.alias == "production" && c.to_version == p.version)
                .max_by_key(|c| c.at_ms)
                .cloned()
        });
        let promoted_by_run = match &production {
            Some(p) => store
                .audit_log(&AuditFilter {
                    kind: Some("model.promote".into()),
                    subject: Some(p.reference.clone()),
                    limit: Some(1),
                    before_id: None,
                })?
                .first()
                .and_then(|row| row.detail.get("run_id"))
                .and_then(serde_json::Value::as_i64),
            None => None,
        };
        Ok(serde_json::json!({
            "model": config.model,
            "experiment": config.experiment,
            "production_variant": config.production_variant,
            "candidate_variant": config.candidate_variant,
            "primary_metric": config.primary_metric,
            "min_improvement": config.min_improvement,
            "production": production,
            "production_since": since,
            "production_run": promoted_by_run,
            "alias_history": history,
            "rollout_config": {
                "strategy": config.rollout.strategy,
                "steps": config.rollout.steps,
                "max_error_rate_increase": config.rollout.max_error_rate_increase,
                "srm_alpha": config.rollout.srm_alpha,
                "alpha": config.rollout.alpha,
            },
            "rollout": lifecycle.rollout(),
            "last_rollout_check": lifecycle.last_rollout_check(),
            "drift": {
                "window_s": config.triggers.drift_window_s,
                "thresholds": config.drift,
                "latest": lifecycle.last_drift(),
            },
        }))
    })
    .await
}

/// `GET /v1/drift`: drift over time (see [`dashboard::data::drift_series`]).
async fn get_drift(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: ViewQuery<SeriesQuery>,
) -> Response {
    let (lifecycle, query) = match lifecycle_view(&state, &headers, query) {
        Ok(call) => call,
        Err(response) => return *response,
    };
    let store = state.store.clone();
    let now = state.clock.now_unix_ms();
    data_blocking(move || dashboard::data::drift_series(&store, lifecycle.config(), &query, now))
        .await
}

/// `GET /v1/drift/features/{feature}`: one feature's distributions.
async fn get_drift_feature(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(feature): axum::extract::Path<String>,
    query: ViewQuery<DistributionQuery>,
) -> Response {
    let (lifecycle, query) = match lifecycle_view(&state, &headers, query) {
        Ok(call) => call,
        Err(response) => return *response,
    };
    let store = state.store.clone();
    let end = query
        .end_ms
        .unwrap_or_else(|| state.clock.now_unix_ms().saturating_add(1));
    data_blocking(move || dashboard::data::distributions(&store, lifecycle.config(), &feature, end))
        .await
}

/// `GET /v1/experiments/{name}/series`: per variant primary metric over time.
async fn get_experiment_series(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
    query: ViewQuery<SeriesQuery>,
) -> Response {
    let query = match view_call(&state, &headers, query) {
        Ok(query) => query,
        Err(response) => return *response,
    };
    let doc = state.control.current();
    let variants: Vec<String> = doc
        .control
        .experiments
        .experiments
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.variants.iter().map(|v| v.name.clone()).collect())
        .unwrap_or_default();
    let alpha = state
        .lifecycle
        .as_ref()
        .map_or(0.05, |h| h.lifecycle.config().rollout.alpha);
    let store = state.store.clone();
    let now = state.clock.now_unix_ms();
    data_blocking(move || {
        dashboard::data::experiment_series(&store, &name, &variants, &query, alpha, now)
    })
    .await
}

/// `GET /v1/dashboard`: what the page needs to know before it reads anything.
async fn get_dashboard(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "read_only": state.read_only,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lifecycle errors map to the status a client can act on: its own fault (4xx), a state
    /// conflict (409), or a store that cannot take the change now (503), never a bare 500.
    #[test]
    fn lifecycle_errors_get_actionable_statuses() {
        let sqlite = || {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ))
        };
        let cases = [
            (LifecycleError::UnknownRun(9), StatusCode::NOT_FOUND),
            (LifecycleError::Busy, StatusCode::CONFLICT),
            (LifecycleError::Refused("no".into()), StatusCode::CONFLICT),
            (
                LifecycleError::Store(StoreError::Invalid("too long".into())),
                StatusCode::BAD_REQUEST,
            ),
            (
                LifecycleError::Control(ControlError::Invalid("bad".into())),
                StatusCode::BAD_REQUEST,
            ),
            (
                LifecycleError::Store(sqlite()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                LifecycleError::Control(ControlError::Store(sqlite())),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (error, status) in cases {
            let text = error.to_string();
            assert_eq!(lifecycle_error(error).status(), status, "{text}");
        }
    }
}
