//! The sidecar's config file (TOML).
//!
//! ```toml
//! listen = "127.0.0.1:7070"          # default; port 0 picks a free one
//! database = "modelgate.db"          # relative to the config file's directory
//! durability = "full"                # "full" (default) or "normal"
//! max_body_bytes = 8388608           # larger report bodies get 413
//! max_series = 10000                 # most (experiment, variant) series stored; a report
//!                                    # that would add more is refused whole (507,
//!                                    # which agents retry)
//! header_read_timeout_s = 30         # a connection that does not send a request's head
//!                                    # (line and headers) in time is closed, idle ones too
//! body_read_timeout_s = 30           # a request body not received in time after its head
//!                                    # is a 408 and the connection is closed
//! agent_token_env = "MODELGATE_AGENT_TOKEN"   # default names of the variables holding
//! admin_token_env = "MODELGATE_ADMIN_TOKEN"   # the tokens (or agent_token_file, ...)
//! dashboard_read_only = false        # true: the dashboard and the admin API's GET routes
//!                                    # answer without the admin token (writes still need it)
//!
//! # The experiments to serve when the database has no control document yet.
//! [[experiments]]
//! name = "ranker"
//! strategy = "canary"
//! percent = 5
//! [[experiments.variants]]
//! name = "production"
//! model = "ranker@1"
//! [[experiments.variants]]
//! name = "candidate"
//! model = "ranker@2"
//! ```
//!
//! Tokens are read from the environment variable named by `*_token_env` or from the file
//! named by `*_token_file`, never from the config file itself, and never logged. Each must be
//! at least 16 bytes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use std::sync::Arc;

use super::lifecycle::config::LifecycleConfig;
use super::lifecycle::resolve;
use super::store::Durability;
use crate::route::{Clock, ExperimentConfig, RouterConfig, SystemClock};

/// Shortest token accepted.
pub const MIN_TOKEN_BYTES: usize = 16;
/// Default of `max_series`: most distinct (experiment, variant) series stored. Each costs
/// a row per minute for the last two hours and a row per hour after that, so 10 000
/// series is far beyond any real set of experiments yet keeps the store bounded.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// Default of `header_read_timeout_s` and `body_read_timeout_s`: 30 s, far beyond what an
/// agent on a working network needs to send a report of the largest accepted size.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `header_read_timeout_s` or `body_read_timeout_s`: one hour.
pub const MAX_READ_TIMEOUT_S: u64 = 3600;

/// Why the config cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The text does not parse.
    #[error("config: {0}")]
    Parse(String),
    /// A value is unusable.
    #[error("config: {0}")]
    Invalid(String),
}

/// The file's contents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    database: Option<PathBuf>,
    durability: Option<Durability>,
    max_body_bytes: Option<usize>,
    max_series: Option<usize>,
    header_read_timeout_s: Option<u64>,
    body_read_timeout_s: Option<u64>,
    agent_token_env: Option<String>,
    agent_token_file: Option<PathBuf>,
    admin_token_env: Option<String>,
    admin_token_file: Option<PathBuf>,
    dashboard_read_only: Option<bool>,
    #[serde(default)]
    experiments: Vec<ExperimentConfig>,
    #[serde(default)]
    lifecycle: Option<LifecycleConfig>,
}

/// A resolved sidecar config.
#[derive(Clone)]
pub struct SidecarConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Database file.
    pub database: PathBuf,
    /// Commit durability.
    pub durability: Durability,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most distinct (experiment, variant) series the store keeps (`max_series`, default
    /// [`DEFAULT_MAX_SERIES`]). Every series a report names is stored for good, so this
    /// bounds the store's growth: a report that would add series past it is refused whole
    /// (`507`, counted as `too_many_series`; agents retry it, so raising the limit loses
    /// no data), and series already stored keep being accepted. Raise it when more experiments are configured over the store's life.
    pub max_series: usize,
    /// How long a connection may take to send a request's line and headers
    /// (`header_read_timeout_s`, default [`DEFAULT_READ_TIMEOUT`]); the clock starts when
    /// the server waits for a request, so an idle keep-alive connection is closed after it
    /// too. A client that connects and sends nothing, or sends a head slowly, holds a
    /// connection and a file descriptor for at most this long.
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive after its head
    /// (`body_read_timeout_s`, default [`DEFAULT_READ_TIMEOUT`]). A report whose body is
    /// late is a `408` (counted as `body_timeout`) and its connection is closed; other
    /// routes answer `400`.
    pub body_read_timeout: Duration,
    /// Token agents present.
    pub agent_token: String,
    /// Token the admin API requires.
    pub admin_token: String,
    /// Whether the dashboard and the admin API's reads answer without the admin token
    /// (`dashboard_read_only`, default `false`). Writes always need the token. Turn it on
    /// only where everyone who can reach the port may see models, runs and the audit log.
    pub dashboard_read_only: bool,
    /// Experiments served when the database has none yet.
    pub experiments: RouterConfig,
    /// The model lifecycle (triggers, training, promotion), when configured.
    pub lifecycle: Option<LifecycleConfig>,
    /// The clock of the store, the lifecycle and its triggers (tests and the demo replay
    /// time with their own).
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SidecarConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarConfig")
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("durability", &self.durability)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_series", &self.max_series)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("agent_token", &"<redacted>")
            .field("admin_token", &"<redacted>")
            .field("dashboard_read_only", &self.dashboard_read_only)
            .field("experiments", &self.experiments.experiments.len())
            .field("lifecycle", &self.lifecycle.as_ref().map(|l| &l.model))
            .finish_non_exhaustive()
    }
}

impl SidecarConfig {
    /// Defaults around a database path and two tokens (for embedding the sidecar in tests
    /// and the demo).
    ///
    /// # Errors
    /// [`SidecarConfigError::Invalid`] for a token shorter than [`MIN_TOKEN_BYTES`].
    pub fn new(
        database: &Path,
        agent_token: &str,
        admin_token: &str,
    ) -> Result<Self, SidecarConfigError> {
        check_token("agent", agent_token)?;
        check_token("admin", admin_token)?;
        Ok(SidecarConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            database: database.to_owned(),
            durability: Durability::Full,
            max_body_bytes: 8 << 20,
            max_series: DEFAULT_MAX_SERIES,
            header_read_timeout: DEFAULT_READ_TIMEOUT,
            body_read_timeout: DEFAULT_READ_TIMEOUT,
            agent_token: agent_token.to_owned(),
            admin_token: admin_token.to_owned(),
            dashboard_read_only: false,
            experiments: RouterConfig::default(),
            lifecycle: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads a config file; relative paths in it are relative to its directory.
    ///
    /// # Errors
    /// [`SidecarConfigError`] naming the problem.
    pub fn load(path: &Path) -> Result<Self, SidecarConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| SidecarConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &|name| std::env::var(name).ok())
    }

    /// Parses config text; `env` looks up environment variables.
    ///
    /// # Errors
    /// [`SidecarConfigError`] naming the problem.
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SidecarConfigError> {
        let file: File =
            toml::from_str(text).map_err(|e| SidecarConfigError::Parse(e.to_string()))?;
        let listen = file.listen.as_deref().unwrap_or("127.0.0.1:7070");
        let listen: SocketAddr = listen.parse().map_err(|_| {
            SidecarConfigError::Invalid(format!(
                "listen = `{listen}` is not an address like 127.0.0.1:7070"
            ))
        })?;
        let database = base.join(file.database.unwrap_or_else(|| "modelgate.db".into()));
        let max_body_bytes = file.max_body_bytes.unwrap_or(8 << 20);
        if max_body_bytes < 1024 {
            return Err(SidecarConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        let max_series = file.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if max_series == 0 {
            return Err(SidecarConfigError::Invalid(
                "max_series must be at least 1".into(),
            ));
        }
        let header_read_timeout =
            read_timeout("header_read_timeout_s", file.header_read_timeout_s)?;
        let body_read_timeout = read_timeout("body_read_timeout_s", file.body_read_timeout_s)?;
        let agent_token = read_token(
            "agent",
            file.agent_token_env.as_deref(),
            file.agent_token_file.as_deref(),
            "MODELGATE_AGENT_TOKEN",
            base,
            env,
        )?;
        let admin_token = read_token(
            "admin",
            file.admin_token_env.as_deref(),
            file.admin_token_file.as_deref(),
            "MODELGATE_ADMIN_TOKEN",
            base,
            env,
        )?;
        if agent_token == admin_token {
            return Err(SidecarConfigError::Invalid(
                "the agent and admin tokens must differ".into(),
            ));
        }
        let experiments = RouterConfig {
            experiments: file.experiments,
        };
        crate::route::Router::new(experiments.clone())
            .map_err(|e| SidecarConfigError::Invalid(format!("experiments: {e}")))?;
        let lifecycle = match file.lifecycle {
            Some(mut l) => {
                l.data = resolve(base, &l.data);
                l.artifacts = resolve(base, &l.artifacts);
                if let crate::sidecar::lifecycle::config::TrainerConfig::Airflow(a) = &mut l.trainer
                {
                    a.exchange_dir = resolve(base, &a.exchange_dir);
                    if let Some(file) = &a.password_file {
                        a.password_file = Some(resolve(base, file));
                    }
                }
                l.validate().map_err(SidecarConfigError::Invalid)?;
                Some(l)
            }
            None => None,
        };
        Ok(SidecarConfig {
            lifecycle,
            clock: Arc::new(SystemClock),
            listen,
            database,
            durability: file.durability.unwrap_or_default(),
            max_body_bytes,
            max_series,
            header_read_timeout,
            body_read_timeout,
            agent_token,
            admin_token,
            dashboard_read_only: file.dashboard_read_only.unwrap_or(false),
            experiments,
        })
    }
}

/// A read timeout of the config, in whole seconds from 1 to [`MAX_READ_TIMEOUT_S`].
fn read_timeout(key: &str, seconds: Option<u64>) -> Result<Duration, SidecarConfigError> {
    match seconds {
        None => Ok(DEFAULT_READ_TIMEOUT),
        Some(s) if (1..=MAX_READ_TIMEOUT_S).contains(&s) => Ok(Duration::from_secs(s)),
        Some(s) => Err(SidecarConfigError::Invalid(format!(
            "{key} = {s}: must be 1 to {MAX_READ_TIMEOUT_S} seconds"
        ))),
    }
}

fn check_token(which: &str, token: &str) -> Result<(), SidecarConfigError> {
    if token.len() < MIN_TOKEN_BYTES {
        return Err(SidecarConfigError::Invalid(format!(
            "the {which} token must be at least {MIN_TOKEN_BYTES} bytes"
        )));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SidecarConfigError::Invalid(format!(
            "the {which} token must not contain spaces or control characters"
        )));
    }
    Ok(())
}

fn read_token(
    which: &str,
    env_name: Option<&str>,
    file: Option<&Path>,
    default_env: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SidecarConfigError> {
    let token = match (env_name, file) {
        (Some(_), Some(_)) => {
            return Err(SidecarConfigError::Invalid(format!(
                "set {which}_token_env or {which}_token_file, not both"
            )));
        }
        (None, Some(file)) => {
            let path = base.join(file);
            std::fs::read_to_string(&path)
                .map_err(|source| SidecarConfigError::Read { path, source })?
                .trim()
                .to_owned()
        }
        (name, None) => {
            let name = name.unwrap_or(default_env);
            env(name).ok_or_else(|| {
                SidecarConfigError::Invalid(format!(
                    "no {which} token: set the environment variable {name} (or {which}_token_file)"
                ))
            })?
        }
    };
    check_token(which, &token)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "MODELGATE_AGENT_TOKEN" => Some("agent-token-0123456789".into()),
            "MODELGATE_ADMIN_TOKEN" => Some("admin-token-0123456789".into()),
            "SHORT" => Some("short".into()),
            _ => None,
        }
    }

    #[test]
    fn defaults_and_relative_database() {
        let c = SidecarConfig::parse("", Path::new("/srv/mg"), &env).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(c.database, Path::new("/srv/mg/modelgate.db"));
        assert_eq!(c.durability, Durability::Full);
        assert_eq!(c.max_series, DEFAULT_MAX_SERIES);
        assert_eq!(c.header_read_timeout, DEFAULT_READ_TIMEOUT);
        assert_eq!(c.body_read_timeout, DEFAULT_READ_TIMEOUT);
        assert!(
            !c.dashboard_read_only,
            "reading needs the token unless told otherwise"
        );
        let c = SidecarConfig::parse("max_series = 20", Path::new("."), &env).unwrap();
        assert_eq!(c.max_series, 20);
        let c = SidecarConfig::parse(
            "header_read_timeout_s = 5\nbody_read_timeout_s = 60",
            Path::new("."),
            &env,
        )
        .unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.body_read_timeout, Duration::from_secs(60));
        let c = SidecarConfig::parse("dashboard_read_only = true", Path::new("."), &env).unwrap();
        assert!(c.dashboard_read_only);
        assert!(
            !format!("{c:?}").contains("0123456789"),
            "tokens are redacted"
        );
    }

    #[test]
    fn clear_errors() {
        let bad = [
            ("listen = \"localhost\"", "not an address"),
            ("agent_token_env = \"MISSING\"", "MISSING"),
            ("agent_token_env = \"SHORT\"", "at least 16"),
            ("admin_token_env = \"MODELGATE_AGENT_TOKEN\"", "must differ"),
            ("lissten = \"127.0.0.1:1\"", "unknown field"),
            ("max_body_bytes = 10", "at least 1024"),
            ("max_series = 0", "max_series must be at least 1"),
            (
                "header_read_timeout_s = 0",
                "header_read_timeout_s = 0: must be 1 to",
            ),
            (
                "body_read_timeout_s = 3601",
                "body_read_timeout_s = 3601: must be 1 to",
            ),
            (
                "[[experiments]]\nname = \"e\"\nstrategy = \"nope\"\n[[experiments.variants]]\nname = \"a\"",
                "experiments",
            ),
        ];
        for (text, needle) in bad {
            let e = SidecarConfig::parse(text, Path::new("."), &env)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
