//! The sidecar's config file (TOML).
//!
//! ```toml
//! listen = "127.0.0.1:7070"          # default; port 0 picks a free one
//! database = "modelgate.db"          # relative to the config file's directory
//! durability = "full"                # "full" (default) or "normal"
//! max_body_bytes = 8388608           # larger report bodies get 413
//! max_series = 10000                 # most (experiment, variant) series stored; a report
//!                                    # that would add more is refused whole (422)
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
    /// (`422`, counted as `too_many_series`), and series already stored keep being
    /// accepted. Raise it when more experiments are configured over the store's life.
    pub max_series: usize,
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
            agent_token,
            admin_token,
            dashboard_read_only: file.dashboard_read_only.unwrap_or(false),
            experiments,
        })
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
        assert!(
            !c.dashboard_read_only,
            "reading needs the token unless told otherwise"
        );
        let c = SidecarConfig::parse("max_series = 20", Path::new("."), &env).unwrap();
        assert_eq!(c.max_series, 20);
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
