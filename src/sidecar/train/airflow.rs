//! The Airflow trainer: training handed to an Apache Airflow 3 DAG over its REST API.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::{check_data_file_job, read_output, write_data_csv};
use super::{
    ExternalRun, StopSignal, TrainError, TrainProgress, TrainedModel, Trainer, TrainingJob,
    create_output_dir, output_stem, sha256_hex, write_atomically,
};
use crate::artifact::ArtifactError;

/// Attempts of a REST call that meets a 5xx answer or a connection failure (polls retry
/// until the run's deadline instead).
const CALL_ATTEMPTS: u32 = 5;
/// First wait after a transient failure; it doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between retries of a failing call.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest error text kept from an Airflow answer.
const DETAIL_CHARS: usize = 600;
/// Task log lines kept in the error of a failed DAG run.
const LOG_TAIL_LINES: usize = 15;

fn default_dag_id() -> String {
    "modelgate_retrain".into()
}
fn default_username_env() -> String {
    "AIRFLOW_USERNAME".into()
}
fn default_password_env() -> String {
    "AIRFLOW_PASSWORD".into()
}
fn default_poll_ms() -> u64 {
    2000
}
fn default_timeout_s() -> u64 {
    6 * 3600
}
fn default_request_timeout_s() -> u64 {
    30
}

/// Settings of the [`AirflowTrainer`] (`[lifecycle.trainer]` with `kind = "airflow"`).
///
/// ```toml
/// [lifecycle.trainer]
/// kind = "airflow"
/// url = "http://airflow.internal:8080"   # the API server
/// dag_id = "modelgate_retrain"            # (default) examples/airflow/modelgate_retrain.py
/// username = "modelgate"                  # or from $AIRFLOW_USERNAME (username_env)
/// password_env = "AIRFLOW_PASSWORD"       # (default) or password_file = "/run/secrets/airflow"
/// exchange_dir = "/mnt/shared/modelgate"  # a directory the sidecar and the DAG's workers share
/// conf = { trainer = "sklearn" }          # extra keys for the DAG run's conf
/// poll_interval_ms = 2000
/// timeout_s = 21600                       # from the DAG run's queueing
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirflowConfig {
    /// Base URL of Airflow's API server (`http://host:8080`; a path prefix is kept).
    pub url: String,
    /// The DAG to trigger.
    #[serde(default = "default_dag_id")]
    pub dag_id: String,
    /// The Airflow user; when absent, read from the variable `username_env`.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the user name when `username` is absent.
    #[serde(default = "default_username_env")]
    pub username_env: String,
    /// The environment variable holding the password (used when `password_file` is absent).
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// A file holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A directory both the sidecar and the DAG's workers can read and write: each attempt
    /// gets `{exchange_dir}/{run_key}/` with the training rows in `data.csv`, and the DAG
    /// writes `model.json` (and optionally `metrics.json`) next to them.
    pub exchange_dir: PathBuf,
    /// Extra keys for the DAG run's `conf`, over the defaults (see [`AirflowTrainer`]);
    /// `{data}`, `{out}`, `{run_key}`, `{run_id}` and `{name}` in string values are
    /// substituted.
    #[serde(default)]
    pub conf: serde_json::Map<String, Value>,
    /// Wait between polls of the DAG run, ms (default 2000).
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// Longest a DAG run may take from its queueing before it is marked failed, seconds
    /// (default six hours).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Timeout of one REST call, seconds (default 30).
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: u64,
}

impl std::fmt::Debug for AirflowConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirflowConfig")
            .field("url", &self.url)
            .field("dag_id", &self.dag_id)
            .field("username", &self.username)
            .field("exchange_dir", &self.exchange_dir)
            .finish_non_exhaustive()
    }
}

impl AirflowConfig {
    /// Settings for `url`, the default DAG and `exchange_dir`, with credentials from
    /// `$AIRFLOW_USERNAME` and `$AIRFLOW_PASSWORD`.
    #[must_use]
    pub fn new(url: impl Into<String>, exchange_dir: impl Into<PathBuf>) -> Self {
        AirflowConfig {
            url: url.into(),
            dag_id: default_dag_id(),
            username: None,
            username_env: default_username_env(),
            password_env: default_password_env(),
            password_file: None,
            exchange_dir: exchange_dir.into(),
            conf: serde_json::Map::new(),
            poll_interval_ms: default_poll_ms(),
            timeout_s: default_timeout_s(),
            request_timeout_s: default_request_timeout_s(),
        }
    }

    /// Checks the settings (not the credentials).
    ///
    /// # Errors
    /// A message naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("trainer.url `{}`: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("trainer.url `{}` must be http or https", self.url));
        }
        if self.dag_id.is_empty()
            || !self
                .dag_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "trainer.dag_id `{}` must be letters, digits, `_`, `-` and `.`",
                self.dag_id
            ));
        }
        if self.exchange_dir.as_os_str().is_empty() {
            return Err("trainer.exchange_dir must be set".into());
        }
        if self.poll_interval_ms == 0 || self.timeout_s == 0 || self.request_timeout_s == 0 {
            return Err(
                "trainer.poll_interval_ms, timeout_s and request_timeout_s must be positive".into(),
            );
        }
        Ok(())
    }
}

/// Why the Airflow trainer failed. Every variant says what Airflow answered and what it
/// means.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AirflowError {
    /// The job's stop signal was raised while a call waited to be retried.
    #[error("stopped {during}: the sidecar is shutting down")]
    Stopped {
        /// What the call was for.
        during: String,
    },
    /// The credentials are missing or unreadable.
    #[error("Airflow credentials: {0}")]
    Credentials(String),
    /// Airflow could not be reached, or kept answering 5xx, after retries.
    #[error("Airflow at {url} is unavailable ({during}, {attempts} attempts): {message}")]
    Unavailable {
        /// The base URL.
        url: String,
        /// What the call was for.
        during: String,
        /// Attempts made.
        attempts: u32,
        /// The last error or answer.
        message: String,
    },
    /// Airflow refused the credentials, or the fresh token too.
    #[error(
        "Airflow refused user `{user}` ({status}) {during}: {detail} (check the user name and password)"
    )]
    Auth {
        /// The user.
        user: String,
        /// The HTTP status.
        status: u16,
        /// What the call was for.
        during: String,
        /// Airflow's `detail`.
        detail: String,
    },
    /// The DAG does not exist (or is not parsed yet).
    #[error(
        "Airflow has no DAG `{dag_id}` (404): is its file in Airflow's DAGs folder, and has the DAG processor parsed it?"
    )]
    UnknownDag {
        /// The DAG.
        dag_id: String,
    },
    /// The DAG exists but cannot run (paused, import errors).
    #[error("DAG `{dag_id}` cannot run: {reason}")]
    DagUnusable {
        /// The DAG.
        dag_id: String,
        /// Why.
        reason: String,
    },
    /// Airflow rejected the request body (422): usually a `conf` the DAG does not take.
    #[error("Airflow rejected the request body ({during}, 422): {detail}")]
    Rejected {
        /// What the call was for.
        during: String,
        /// Airflow's `detail` (its validation errors).
        detail: String,
    },
    /// Any other unexpected answer.
    #[error("Airflow answered {status} ({during}): {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// What the call was for.
        during: String,
        /// Airflow's `detail` or the body.
        detail: String,
    },
    /// The DAG run ended `failed`.
    #[error(
        "DAG run `{run_id}` failed ({url}); failed tasks: {tasks}{}",
        log_lines(log_tail)
    )]
    RunFailed {
        /// The DAG run.
        run_id: String,
        /// Where a person can look at it.
        url: String,
        /// The failed tasks (`train (try 1)`), or `unknown`.
        tasks: String,
        /// The last lines of the first failed task's log, when Airflow gave them.
        log_tail: String,
    },
    /// The DAG run did not finish in time; it was marked failed in Airflow when possible.
    #[error(
        "DAG run `{run_id}` did not finish within {timeout:?} of its queueing (last state `{state}`); {marked}"
    )]
    Timeout {
        /// The DAG run.
        run_id: String,
        /// The timeout.
        timeout: Duration,
        /// Its last state.
        state: String,
        /// Whether it was marked failed in Airflow.
        marked: String,
    },
    /// The DAG run succeeded but its artifact is missing or invalid.
    #[error("DAG run `{run_id}` succeeded but its artifact {path} is unusable: {source}")]
    Artifact {
        /// The DAG run.
        run_id: String,
        /// The artifact it should have written.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<ArtifactError>,
    },
}

fn log_lines(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last log lines:\n{tail}")
    }
}

/// Trains by triggering an Apache Airflow 3 DAG run over the REST API and following it.
///
/// For each job it:
///
/// 1. writes the training rows to `{exchange_dir}/{run_key}/data.csv` (the
///    [`CommandTrainer`](super::CommandTrainer)'s format: `timestamp_ms`, the features,
///    then the label, binary labels as 1 for the positive value and 0);
/// 2. gets a token (`POST /auth/token`), checks the DAG (`GET /api/v2/dags/{dag_id}`: it
///    must exist, be unpaused and import cleanly), and triggers
///    `POST /api/v2/dags/{dag_id}/dagRuns` with `dag_run_id` = the job's `run_key` and the
///    `conf`
///
///    ```json
///    {"data": ".../data.csv", "out": "{exchange_dir}/{run_key}", "run_key": "...",
///     "run_id": 7, "model": "elec", "features": ["nswprice", ...], "label": "label",
///     "label_kind": "binary", "positive": "1", "timestamp_column": "timestamp_ms"}
///    ```
///
///    plus the configured extra keys;
/// 3. polls `GET /api/v2/dags/{dag_id}/dagRuns/{run_key}` every `poll_interval_ms` until
///    `success` or `failed`, or until `timeout_s` after the run was queued (then it marks
///    the run failed in Airflow);
/// 4. on success reads `{out}/model.json` and `{out}/metrics.json` (optional, name →
///    number, merged into the artifact's metrics), validates them against the job, and
///    copies the artifact to `{output_dir}/{name}-run{run_id}.json`; on failure names the
///    failed tasks and the end of the first one's log.
///
/// It is idempotent against retries and restarts: before triggering it looks the
/// `run_key` up, and a run that already exists (or a 409 on the trigger) is followed, not
/// started again. Errors: a 401 (or a 403 "Invalid JWT token") fetches a new token once;
/// 5xx answers and connection failures are retried with doubling waits (polls until the
/// deadline); 404 for the DAG, 422 for a body the DAG rejects and any other status are
/// reported with their meaning. The password is never logged.
pub struct AirflowTrainer {
    config: AirflowConfig,
    base: String,
    user: String,
    password: String,
    client: Client,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for AirflowTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirflowTrainer")
            .field("url", &self.base)
            .field("dag_id", &self.config.dag_id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// An answer: status and JSON body (a non-JSON body becomes a string).
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn detail(&self) -> String {
        let detail = self.body.get("detail").unwrap_or(&self.body);
        let text = match detail {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        truncate(&text, DETAIL_CHARS)
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

impl AirflowTrainer {
    /// A trainer for `config`, reading the credentials now.
    ///
    /// # Errors
    /// [`TrainError::Config`] for bad settings, [`AirflowError::Credentials`] when the user
    /// or password is missing.
    pub fn new(config: AirflowConfig) -> Result<Self, TrainError> {
        config.validate().map_err(TrainError::Config)?;
        let user = match &config.username {
            Some(user) => user.clone(),
            None => std::env::var(&config.username_env).map_err(|_| {
                AirflowError::Credentials(format!(
                    "no trainer.username and ${} is not set",
                    config.username_env
                ))
            })?,
        };
        let password = match &config.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    AirflowError::Credentials(format!(
                        "cannot read the password file {}: {e}",
                        path.display()
                    ))
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            None => std::env::var(&config.password_env).map_err(|_| {
                AirflowError::Credentials(format!(
                    "no trainer.password_file and ${} is not set",
                    config.password_env
                ))
            })?,
        };
        if user.is_empty() || password.is_empty() {
            return Err(AirflowError::Credentials("empty user name or password".into()).into());
        }
        // reqwest is built without a TLS provider of its own; install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = Duration::from_secs(config.request_timeout_s);
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| TrainError::Config(format!("HTTP client: {e}")))?;
        Ok(AirflowTrainer {
            base: config.url.trim_end_matches('/').to_owned(),
            config,
            user,
            password,
            client,
            token: Mutex::new(None),
        })
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &AirflowConfig {
        &self.config
    }

    /// Where a person looks at a DAG run in Airflow's UI.
    #[must_use]
    pub fn run_url(&self, run_id: &str) -> String {
        format!("{}/dags/{}/runs/{run_id}", self.base, self.config.dag_id)
    }

    fn dag_path(&self) -> String {
        format!("/api/v2/dags/{}", self.config.dag_id)
    }

    fn run_path(&self, run_id: &str) -> String {
        format!("{}/dagRuns/{run_id}", self.dag_path())
    }

    /// One HTTP exchange; `Err` is a transport failure.
    fn exchange(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Answer, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    /// Retries `call` on transport failures and 5xx answers, with doubling waits, for
    /// `attempts` tries or until `deadline`; gives up at once when `stop` is raised.
    fn retrying(
        &self,
        during: &str,
        attempts: u32,
        deadline: Option<Instant>,
        stop: Option<&StopSignal>,
        mut call: impl FnMut() -> Result<Answer, AirflowError>,
    ) -> Result<Answer, AirflowError> {
        let mut wait = FIRST_BACKOFF;
        let mut tried = 0u32;
        loop {
            tried += 1;
            let failure = match call() {
                Ok(answer) if answer.status >= 500 => {
                    format!("{} {}", answer.status, answer.detail())
                }
                Ok(answer) => return Ok(answer),
                Err(AirflowError::Unavailable { message, .. }) => message,
                Err(e) => return Err(e),
            };
            let out_of_time = deadline.is_some_and(|d| Instant::now() + wait >= d);
            let out_of_tries = deadline.is_none() && tried >= attempts;
            if out_of_time || out_of_tries {
                return Err(AirflowError::Unavailable {
                    url: self.base.clone(),
                    during: during.into(),
                    attempts: tried,
                    message: failure,
                });
            }
            tracing::warn!("Airflow {during}: {failure}; retrying in {wait:?}");
            // Backoff between attempts of a failing remote call (the pipeline's thread).
            let stopped = match stop {
                Some(stop) => stop.sleep(wait),
                None => {
                    std::thread::sleep(wait);
                    false
                }
            };
            if stopped {
                return Err(AirflowError::Stopped {
                    during: during.into(),
                });
            }
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    /// A fresh token from `POST /auth/token`.
    fn fetch_token(&self, stop: Option<&StopSignal>) -> Result<String, AirflowError> {
        let body = serde_json::json!({"username": self.user, "password": self.password});
        let answer = self.retrying("getting a token", CALL_ATTEMPTS, None, stop, || {
            self.exchange(&Method::POST, "/auth/token", Some(&body), None)
                .map_err(|message| self.unavailable("getting a token", message))
        })?;
        match answer.status {
            200..=299 => answer
                .body
                .get("access_token")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| AirflowError::Status {
                    status: answer.status,
                    during: "getting a token".into(),
                    detail: "the answer has no access_token".into(),
                }),
            401 | 403 => Err(AirflowError::Auth {
                user: self.user.clone(),
                status: answer.status,
                during: "getting a token".into(),
                detail: answer.detail(),
            }),
            status => Err(AirflowError::Status {
                status,
                during: "getting a token".into(),
                detail: answer.detail(),
            }),
        }
    }

    fn unavailable(&self, during: &str, message: String) -> AirflowError {
        AirflowError::Unavailable {
            url: self.base.clone(),
            during: during.into(),
            attempts: 1,
            message,
        }
    }

    /// An authenticated call: a 401 (or a 403 for an invalid token) drops the token and
    /// tries once more with a new one; transient failures are retried.
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        during: &str,
        deadline: Option<Instant>,
        stop: Option<&StopSignal>,
    ) -> Result<Answer, AirflowError> {
        let mut refused_once = false;
        loop {
            let cached = self
                .token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let token = match cached {
                Some(token) => token,
                None => {
                    let token = self.fetch_token(stop)?;
                    *self
                        .token
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.clone());
                    token
                }
            };
            let answer = self.retrying(during, CALL_ATTEMPTS, deadline, stop, || {
                self.exchange(&method, path, body, Some(&token))
                    .map_err(|message| self.unavailable(during, message))
            })?;
            let refused =
                answer.status == 401 || (answer.status == 403 && answer.detail().contains("JWT"));
            if !refused {
                return Ok(answer);
            }
            *self
                .token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            if refused_once {
                return Err(AirflowError::Auth {
                    user: self.user.clone(),
                    status: answer.status,
                    during: during.into(),
                    detail: answer.detail(),
                });
            }
            refused_once = true;
            tracing::info!(
                "Airflow refused the token ({}): fetching a new one",
                answer.detail()
            );
        }
    }

    /// Checks that the DAG exists, is unpaused and imports cleanly.
    fn check_dag(&self, stop: &StopSignal) -> Result<(), AirflowError> {
        let dag_id = &self.config.dag_id;
        let answer = self.call(
            Method::GET,
            &self.dag_path(),
            None,
            "checking the DAG",
            None,
            Some(stop),
        )?;
        match answer.status {
            200 => {}
            404 => {
                return Err(AirflowError::UnknownDag {
                    dag_id: dag_id.clone(),
                });
            }
            status => {
                return Err(AirflowError::Status {
                    status,
                    during: "checking the DAG".into(),
                    detail: answer.detail(),
                });
            }
        }
        if answer.body.get("is_paused").and_then(Value::as_bool) == Some(true) {
            return Err(AirflowError::DagUnusable {
                dag_id: dag_id.clone(),
                reason: "it is paused, so its runs would stay queued; unpause it in Airflow".into(),
            });
        }
        if answer
            .body
            .get("has_import_errors")
            .and_then(Value::as_bool)
            == Some(true)
        {
            return Err(AirflowError::DagUnusable {
                dag_id: dag_id.clone(),
                reason: "its file has import errors (see Airflow's DAG import errors)".into(),
            });
        }
        Ok(())
    }

    /// The DAG run `run_id`, or `None` when Airflow does not know it.
    fn get_run(
        &self,
        run_id: &str,
        deadline: Option<Instant>,
        stop: &StopSignal,
    ) -> Result<Option<Value>, AirflowError> {
        let answer = self.call(
            Method::GET,
            &self.run_path(run_id),
            None,
            "reading the DAG run",
            deadline,
            Some(stop),
        )?;
        match answer.status {
            200 => Ok(Some(answer.body)),
            404 if answer.detail().contains("DagRun") || answer.detail().contains("run_id") => {
                Ok(None)
            }
            404 => Err(AirflowError::UnknownDag {
                dag_id: self.config.dag_id.clone(),
            }),
            status => Err(AirflowError::Status {
                status,
                during: "reading the DAG run".into(),
                detail: answer.detail(),
            }),
        }
    }

    /// Triggers the DAG run; `Ok(false)` when it already existed (409).
    fn trigger(&self, run_id: &str, conf: &Value, stop: &StopSignal) -> Result<bool, AirflowError> {
        let body = serde_json::json!({"dag_run_id": run_id, "logical_date": null, "conf": conf});
        let during = "triggering the DAG run";
        let answer = self.call(
            Method::POST,
            &format!("{}/dagRuns", self.dag_path()),
            Some(&body),
            during,
            None,
            Some(stop),
        )?;
        match answer.status {
            200..=299 => Ok(true),
            409 => Ok(false),
            404 => Err(AirflowError::UnknownDag {
                dag_id: self.config.dag_id.clone(),
            }),
            422 | 400 => Err(AirflowError::Rejected {
                during: during.into(),
                detail: answer.detail(),
            }),
            status => Err(AirflowError::Status {
                status,
                during: during.into(),
                detail: answer.detail(),
            }),
        }
    }

    /// The DAG run's `conf` for a job.
    fn conf(&self, job: &TrainingJob<'_>, data: &Path, out: &Path) -> Value {
        let data_s = data.display().to_string();
        let out_s = out.display().to_string();
        let run_id = job.run_id.to_string();
        let values = [
            ("data", data_s.as_str()),
            ("out", out_s.as_str()),
            ("run_key", job.run_key.as_str()),
            ("run_id", run_id.as_str()),
            ("name", job.model_name.as_str()),
        ];
        let mut conf = serde_json::json!({
            "data": data_s,
            "out": out_s,
            "run_key": job.run_key,
            "run_id": job.run_id,
            "model": job.model_name,
            "features": job.features,
            "label": job.label.name,
            "label_kind": job.label.kind.as_str(),
            "positive": job.label.positive,
            "timestamp_column": super::COMMAND_TIMESTAMP_COLUMN,
        });
        if let Value::Object(map) = &mut conf {
            for (key, value) in &self.config.conf {
                map.insert(key.clone(), substitute_json(value, &values));
            }
        }
        conf
    }

    /// Polls the run until it ends, its deadline passes or `stop` is raised (then the run is
    /// left running in Airflow: a restarted sidecar follows it again).
    fn follow(
        &self,
        run_id: &str,
        first: Value,
        stop: &StopSignal,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<Followed, AirflowError> {
        let timeout = Duration::from_secs(self.config.timeout_s);
        let deadline = Instant::now()
            .checked_add(remaining(&first, timeout))
            .unwrap_or_else(|| Instant::now() + timeout);
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut run = first;
        let mut last_state = String::new();
        loop {
            let state = run
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            if state != last_state {
                tracing::info!("DAG run {run_id}: {state}");
                progress(TrainProgress::ExternalRunState {
                    run_id: run_id.into(),
                    state: state.clone(),
                });
                last_state.clone_from(&state);
            }
            match state.as_str() {
                "success" => return Ok(Followed::Succeeded),
                "failed" => return Err(self.failure(run_id)),
                _ => {}
            }
            if Instant::now() >= deadline {
                let marked = self.mark_failed(run_id);
                return Err(AirflowError::Timeout {
                    run_id: run_id.into(),
                    timeout,
                    state,
                    marked,
                });
            }
            // Waiting for the remote run between polls (the pipeline's own thread).
            if stop.sleep(poll.min(deadline.saturating_duration_since(Instant::now()))) {
                tracing::info!("stopped following DAG run {run_id}: the sidecar is shutting down");
                return Ok(Followed::Stopped);
            }
            run = match self.get_run(run_id, Some(deadline), stop)? {
                Some(run) => run,
                None => {
                    return Err(AirflowError::Status {
                        status: 404,
                        during: "following the DAG run".into(),
                        detail: format!("DAG run `{run_id}` disappeared from Airflow"),
                    });
                }
            };
        }
    }

    /// Marks a timed-out run failed in Airflow; says whether that worked.
    fn mark_failed(&self, run_id: &str) -> String {
        let body = serde_json::json!({"state": "failed"});
        match self.call(
            Method::PATCH,
            &self.run_path(run_id),
            Some(&body),
            "marking the DAG run failed",
            None,
            None,
        ) {
            Ok(a) if (200..300).contains(&a.status) => "it was marked failed in Airflow".into(),
            Ok(a) => format!(
                "marking it failed in Airflow answered {}: {}",
                a.status,
                a.detail()
            ),
            Err(e) => format!("marking it failed in Airflow failed: {e}"),
        }
    }

    /// What is known about a failed run: its failed tasks and the end of the first one's
    /// log (best effort).
    fn failure(&self, run_id: &str) -> AirflowError {
        let mut tasks = Vec::new();
        let mut log_tail = String::new();
        let path = format!("{}/taskInstances", self.run_path(run_id));
        if let Ok(answer) = self.call(
            Method::GET,
            &path,
            None,
            "reading task instances",
            None,
            None,
        ) && answer.status == 200
        {
            let failed = answer
                .body
                .get("task_instances")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|t| {
                    matches!(
                        t.get("state").and_then(Value::as_str),
                        Some("failed" | "upstream_failed")
                    )
                });
            for task in failed {
                let id = task.get("task_id").and_then(Value::as_str).unwrap_or("?");
                let try_number = task.get("try_number").and_then(Value::as_u64).unwrap_or(1);
                tasks.push(format!("{id} (try {try_number})"));
                if log_tail.is_empty()
                    && task.get("state").and_then(Value::as_str) == Some("failed")
                {
                    log_tail = self.task_log_tail(run_id, id, try_number);
                }
            }
        }
        AirflowError::RunFailed {
            run_id: run_id.into(),
            url: self.run_url(run_id),
            tasks: if tasks.is_empty() {
                "unknown".into()
            } else {
                tasks.join(", ")
            },
            log_tail,
        }
    }

    fn task_log_tail(&self, run_id: &str, task_id: &str, try_number: u64) -> String {
        let path = format!(
            "{}/taskInstances/{task_id}/logs/{try_number}",
            self.run_path(run_id)
        );
        let Ok(answer) = self.call(Method::GET, &path, None, "reading the task log", None, None)
        else {
            return String::new();
        };
        let lines: Vec<String> = match answer.body.get("content") {
            Some(Value::Array(events)) => events
                .iter()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("event")
                        .and_then(Value::as_str)
                        .map_or_else(|| other.to_string(), str::to_owned),
                })
                .collect(),
            Some(Value::String(text)) => text.lines().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[start..]
            .iter()
            .map(|l| truncate(l, 300))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Time left before `timeout` runs out, counted from the run's `queued_at` (from now when
/// it is absent or unreadable).
fn remaining(run: &Value, timeout: Duration) -> Duration {
    let queued = run
        .get("queued_at")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let Some(queued) = queued else {
        return timeout;
    };
    let elapsed = chrono::Utc::now()
        .signed_duration_since(queued)
        .to_std()
        .unwrap_or(Duration::ZERO);
    timeout.saturating_sub(elapsed)
}

/// Substitutes `{key}` placeholders in every string of `value`, once each.
fn substitute_json(value: &Value, values: &[(&str, &str)]) -> Value {
    match value {
        Value::String(s) => Value::String(super::command::substitute(s, values)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute_json(v, values)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_json(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A `run_key` Airflow accepts as a run id (`^[A-Za-z0-9_.~:+-]+$`, at most 250 chars).
fn check_run_key(run_key: &str) -> Result<(), TrainError> {
    let ok = !run_key.is_empty()
        && run_key.len() <= 250
        && run_key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(TrainError::InvalidJob(format!(
            "run key `{run_key}` must be 1 to 250 letters, digits, `_`, `-` and `.`"
        )))
    }
}

/// How following a DAG run ended, when it did not fail.
enum Followed {
    /// The run succeeded.
    Succeeded,
    /// The job's stop signal was raised first.
    Stopped,
}

impl Trainer for AirflowTrainer {
    fn train(
        &self,
        job: &TrainingJob<'_>,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<TrainedModel, TrainError> {
        match self.train_job(job, progress) {
            Err(TrainError::Airflow(AirflowError::Stopped { .. })) => Err(TrainError::Stopped),
            result => result,
        }
    }

    fn resumes_runs(&self) -> bool {
        true
    }
}

impl AirflowTrainer {
    /// [`Trainer::train`], with a stop met in a retry reported as an Airflow error.
    fn train_job(
        &self,
        job: &TrainingJob<'_>,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<TrainedModel, TrainError> {
        let columns = check_data_file_job(job)?;
        check_run_key(&job.run_key)?;
        progress(TrainProgress::Started {
            rows: job.data.len(),
            features: columns.len(),
        });
        let run_id = job.run_key.as_str();
        let out = self.config.exchange_dir.join(run_id);
        let data = out.join("data.csv");
        let model_path = out.join("model.json");
        let metrics_path = out.join("metrics.json");
        let url = self.run_url(run_id);

        let existing = self.get_run(run_id, None, &job.stop)?;
        let first = match existing {
            Some(run) => {
                let state = run
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned();
                tracing::info!("DAG run {run_id} already exists ({state}); following it");
                progress(TrainProgress::ExternalRunFound {
                    system: "airflow".into(),
                    run_id: run_id.into(),
                    state,
                });
                run
            }
            None => {
                self.check_dag(&job.stop)?;
                create_output_dir(&out)?;
                for stale in [&model_path, &metrics_path] {
                    let _ = std::fs::remove_file(stale);
                }
                write_data_csv(job, &columns, &data)?;
                let conf = self.conf(job, &data, &out);
                if self.trigger(run_id, &conf, &job.stop)? {
                    tracing::info!("triggered DAG run {run_id}: {url}");
                    progress(TrainProgress::ExternalRunTriggered {
                        system: "airflow".into(),
                        run_id: run_id.into(),
                        url: url.clone(),
                    });
                } else {
                    progress(TrainProgress::ExternalRunFound {
                        system: "airflow".into(),
                        run_id: run_id.into(),
                        state: "exists (409)".into(),
                    });
                }
                self.get_run(run_id, None, &job.stop)?
                    .ok_or_else(|| AirflowError::Status {
                        status: 404,
                        during: "reading the triggered DAG run".into(),
                        detail: format!("DAG run `{run_id}` is not in Airflow after its trigger"),
                    })?
            }
        };
        let followed = self.follow(run_id, first, &job.stop, progress);
        if matches!(followed, Ok(Followed::Stopped)) {
            // The DAG run may still read its data file.
            return Err(TrainError::Stopped);
        }
        let _ = std::fs::remove_file(&data);
        followed?;

        let artifact_error = |source: ArtifactError| AirflowError::Artifact {
            run_id: run_id.into(),
            path: model_path.clone(),
            source: Box::new(source),
        };
        let (artifact, bytes) =
            read_output(&model_path, &metrics_path, job).map_err(artifact_error)?;
        // The registry points at a copy in the sidecar's own artifact directory, which does
        // not depend on the shared directory's retention.
        create_output_dir(&job.output_dir)?;
        let local = job
            .output_dir
            .join(format!("{}.json", output_stem(&job.model_name, job.run_id)));
        write_atomically(&local, &bytes)?;
        let sha256 = sha256_hex(&bytes);
        progress(TrainProgress::ArtifactWritten {
            path: local.clone(),
            sha256: sha256.clone(),
        });
        Ok(TrainedModel {
            artifact,
            artifact_path: local,
            sha256,
            log: None,
            external_run: Some(ExternalRun {
                system: "airflow".into(),
                run_id: run_id.into(),
                url,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_in_conf_values_are_substituted() {
        let values = [("out", "/x/out"), ("name", "elec")];
        let v = serde_json::json!({"a": "{out}/m.json", "b": ["{name}", 3], "c": {"d": "{zz}"}});
        assert_eq!(
            substitute_json(&v, &values),
            serde_json::json!({"a": "/x/out/m.json", "b": ["elec", 3], "c": {"d": "{zz}"}})
        );
    }

    #[test]
    fn run_keys_must_be_airflow_run_ids() {
        assert!(check_run_key("modelgate-elec-run3-1767225600000-a1").is_ok());
        assert!(check_run_key("").is_err());
        assert!(check_run_key("a/b").is_err());
        assert!(check_run_key(&"x".repeat(251)).is_err());
    }

    #[test]
    fn the_deadline_counts_from_the_queueing() {
        let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let run = serde_json::json!({"queued_at": an_hour_ago});
        let left = remaining(&run, Duration::from_secs(3 * 3600));
        assert!(left <= Duration::from_secs(2 * 3600) && left > Duration::from_secs(7000));
        assert_eq!(
            remaining(&serde_json::json!({}), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            remaining(&run, Duration::from_secs(60)),
            Duration::ZERO,
            "a run queued longer ago than the timeout has no time left"
        );
    }

    #[test]
    fn configs_are_checked_and_secrets_stay_out_of_debug() {
        let mut config = AirflowConfig::new("http://127.0.0.1:8080", "/tmp/x");
        assert!(config.validate().is_ok());
        config.dag_id = "bad id".into();
        assert!(config.validate().is_err());
        config.dag_id = "ok".into();
        config.url = "ftp://x".into();
        assert!(config.validate().is_err());
        config.url = "http://127.0.0.1:1".into();
        config.username = Some("u".into());
        config.password_env = "MODELGATE_TEST_UNSET_PASSWORD_VARIABLE".into();
        let err = AirflowTrainer::new(config.clone()).unwrap_err().to_string();
        assert!(
            err.contains("MODELGATE_TEST_UNSET_PASSWORD_VARIABLE"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("mg-airflow-pw-{}", std::process::id()));
        std::fs::write(&dir, "s3cret-value\n").unwrap();
        config.password_file = Some(dir.clone());
        let trainer = AirflowTrainer::new(config).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(trainer.password, "s3cret-value");
        assert!(!format!("{trainer:?}").contains("s3cret"));
    }
}
