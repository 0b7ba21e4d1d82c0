//! A blocking client of the admin API, for the CLI (`modelgate status`, and the write
//! commands later issues add).

use std::fmt::Write as _;
use std::time::Duration;

use super::server::Status;
use super::store::RunRecord;

/// The local user's name, for the audit log (`USER` or `USERNAME`).
fn whoami() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.is_empty())
}

/// A readable list of runs with their steps.
#[must_use]
pub fn render_runs(runs: &[RunRecord]) -> String {
    let mut out = String::new();
    if runs.is_empty() {
        out.push_str("no pipeline runs yet\n");
    }
    for run in runs {
        let _ = writeln!(
            out,
            "run {:<5} {:<15} trigger {:<12} started {}",
            run.id, run.state, run.trigger, run.started_ms
        );
        for step in &run.steps {
            let _ = writeln!(
                out,
                "    {:>2}. {:<12} {:<10} {}",
                step.seq,
                step.name,
                step.state,
                serde_json::to_string(&step.detail).unwrap_or_default()
            );
        }
        if let Some(outcome) = &run.outcome {
            let _ = writeln!(
                out,
                "    outcome: {}",
                serde_json::to_string(outcome).unwrap_or_default()
            );
        }
    }
    out
}

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The sidecar cannot be reached.
    #[error("cannot reach the sidecar at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The cause.
        reason: String,
    },
    /// The sidecar answered with an error status.
    #[error("the sidecar answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The answer does not parse.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// Admin API client.
#[derive(Debug)]
pub struct AdminClient {
    url: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl AdminClient {
    /// A client of the sidecar at `url` with the admin `token`.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] when the HTTP client cannot be built.
    pub fn new(url: &str, token: &str) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = url.trim_end_matches('/').to_owned();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok(AdminClient {
            url,
            token: token.to_owned(),
            http,
        })
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.url);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status();
        let body = response
            .text()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status: status.as_u16(),
                body,
            });
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}{path}", self.url);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .timeout(Duration::from_secs(600))
            .send()
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status();
        let text = response
            .text()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status: status.as_u16(),
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `POST /v1/runs/{id}/approve`: promotes the run's candidate.
    ///
    /// # Errors
    /// [`ClientError`]: a 404 for an id no run has, a 409 when the run is not waiting for
    /// review.
    pub fn approve(&self, run_id: i64, reason: &str) -> Result<serde_json::Value, ClientError> {
        self.post_json(
            &format!("/v1/runs/{run_id}/approve"),
            &serde_json::json!({"reason": reason, "actor": whoami()}),
        )
    }

    /// `POST /v1/runs/{id}/reject`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn reject(&self, run_id: i64, reason: &str) -> Result<serde_json::Value, ClientError> {
        self.post_json(
            &format!("/v1/runs/{run_id}/reject"),
            &serde_json::json!({"reason": reason, "actor": whoami()}),
        )
    }

    /// `POST /v1/rollback`: restores `to` (default: the previous version).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn rollback(
        &self,
        to: Option<u32>,
        reason: &str,
    ) -> Result<serde_json::Value, ClientError> {
        self.post_json(
            "/v1/rollback",
            &serde_json::json!({"reason": reason, "to": to, "actor": whoami()}),
        )
    }

    /// `POST /v1/retrain`: queues a manual run.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn retrain(&self, reason: &str) -> Result<serde_json::Value, ClientError> {
        self.post_json(
            "/v1/retrain",
            &serde_json::json!({"reason": reason, "actor": whoami()}),
        )
    }

    /// `GET /v1/runs`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Runs {
            runs: Vec<RunRecord>,
        }
        Ok(self
            .get_json::<Runs>(&format!("/v1/runs?limit={limit}"))?
            .runs)
    }

    /// `GET /v1/status`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn status(&self) -> Result<Status, ClientError> {
        self.get_json("/v1/status")
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"))
}

/// A readable summary of a status.
#[must_use]
pub fn render_status(status: &Status, now_ms: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "modelgate sidecar {} · up {}s · control {}",
        status.version,
        status.uptime_s,
        &status.control_etag[..status.control_etag.len().min(12)]
    );
    let _ = writeln!(
        out,
        "experiments: {}",
        if status.experiments.is_empty() {
            "(none)".to_owned()
        } else {
            status.experiments.join(", ")
        }
    );
    let rejected: u64 = status.ingest.rejected.values().sum();
    let _ = writeln!(
        out,
        "reports since start: {} accepted, {} duplicates, {} rejected{}",
        status.ingest.accepted,
        status.ingest.duplicates,
        rejected,
        if rejected == 0 {
            String::new()
        } else {
            let parts: Vec<String> = status
                .ingest
                .rejected
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            format!(" ({})", parts.join(", "))
        }
    );
    let _ = writeln!(out, "agents: {}", status.agents.len());
    for a in &status.agents {
        let age = (now_ms - a.last_report_ms).max(0) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "  {:<32} {:>8} reports, last {:.1}s ago",
            a.agent_id, a.reports, age
        );
    }
    if status.variants.is_empty() {
        let _ = writeln!(out, "no variant has reported yet");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16} {:<12} {:<12} {:>10} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "experiment",
        "variant",
        "model",
        "requests",
        "err%",
        "p50 ms",
        "p99 ms",
        "success%",
        "outcome"
    );
    for v in &status.variants {
        let success = if v.trials == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", 100.0 * v.successes as f64 / v.trials as f64)
        };
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<12} {:>10} {:>8.3} {:>9} {:>9} {:>10} {:>10}",
            v.experiment,
            v.variant,
            v.model.as_deref().unwrap_or("-"),
            v.requests,
            100.0 * v.error_rate,
            opt_ms(v.latency_p50_ms),
            opt_ms(v.latency_p99_ms),
            success,
            v.outcome_mean
                .map_or_else(|| "-".to_owned(), |m| format!("{m:.4}")),
        );
    }
    out
}
