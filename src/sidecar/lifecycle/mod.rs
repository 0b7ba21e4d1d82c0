//! The model lifecycle: triggers → training → evaluation → decision → notification →
//! promotion, every step persisted as a pipeline run and every decision an audit row.
//!
//! ```text
//!  tick ─► triggers (initial · schedule · volume · drift · performance · manual)
//!           │ first firing (all firings are audit rows)
//!           ▼
//!  run ─► training ─► evaluating ─► deciding ─┬─► approved ─► notifying (grace period) ─► promoted
//!                                             ├─► pending_review ─► approve | reject (admin)
//!                                             └─► rejected (candidate worse than production)
//! ```
//!
//! * **Policy**: the candidate is approved automatically when it beats production on the
//!   primary metric by at least `min_improvement` (relative, in the metric's direction) and
//!   no guardrail metric is worse than its tolerance; it is rejected automatically when it
//!   is worse on the primary metric; otherwise it waits for a person.
//! * **Promotion** moves the `production` alias (the old version becomes `previous`),
//!   points the experiment's production variant at the new version in the control
//!   document, and finishes the run, in one transaction: agents hot-swap at their next
//!   poll. **Rollback** does the same towards `previous` (or a chosen version).
//! * **Restart**: a run left `running` by a stopped sidecar is marked failed (with a
//!   notification) when the lifecycle starts again; runs waiting for review keep waiting.
//!   The exception is a run stopped in a training step whose trainer works elsewhere (an
//!   Airflow DAG run, [`Trainer::resumes_runs`]): its attempt key is persisted with the
//!   step, so [`Lifecycle::resume_interrupted`] follows the same external run and carries
//!   the run on to its decision. A decision is one transaction, so it is never half applied.

pub mod config;
pub mod rollout;
pub mod triggers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::config::{LifecycleConfig, TrainerConfig};
use self::rollout::{RolloutAction, RolloutCheck, RolloutState, RolloutStrategy};
use self::triggers::{Firing, TriggerKind};
use super::control::{ControlError, ControlPlane};
use super::evaluate::{self, EvaluationReport, Metric};
use super::notify::{Notification, NotificationKind, Notifier};
use super::store::{AliasMove, DecisionCommit, NewAudit, NewModel, RunRecord, Store, StoreError};
use super::train::{
    AirflowTrainer, CommandTrainer, CsvSpec, LinfaTrainer, StopSignal, TrainError, TrainedModel,
    Trainer, TrainingData, TrainingJob,
};
use crate::artifact::{LabelSpec, ModelArtifact};
use crate::metrics::VariantMetrics;
use crate::route::Clock;
use crate::sketch::FeatureProfile;
use crate::wire::{Control, ModelAssignment};

/// Why a lifecycle action failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// A run is already in progress.
    #[error("a pipeline run is already in progress")]
    Busy,
    /// The config is unusable.
    #[error("lifecycle config: {0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The control document could not change.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// No pipeline run has this id.
    #[error("no pipeline run {0}")]
    UnknownRun(i64),
    /// The request does not fit the current state (not pending review, no previous
    /// version...).
    #[error("{0}")]
    Refused(String),
    /// An administrator stopped an update during its grace period (a reject of the run, or
    /// a rollback): production is unchanged and the run is rejected.
    #[error("run {run_id}: {actor} stopped the update during its grace period: {reason}")]
    Vetoed {
        /// The run whose update was stopped.
        run_id: i64,
        /// Who stopped it.
        actor: String,
        /// Why.
        reason: String,
    },
    /// The sidecar stopped while an Airflow DAG run trained the candidate; the run stays in
    /// its training step and a restarted sidecar follows the DAG run again.
    #[error("pipeline run {run_id} was interrupted at {step} by a shutdown; a restart resumes it")]
    Interrupted {
        /// The run.
        run_id: i64,
        /// The step.
        step: String,
    },
    /// A pipeline step failed (the run is marked failed; production is untouched).
    #[error("pipeline run {run_id} failed at {step}: {reason}")]
    StepFailed {
        /// The run.
        run_id: i64,
        /// The step.
        step: String,
        /// Why.
        reason: String,
    },
}

/// How a run ended (or paused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The run.
    pub run_id: i64,
    /// Its state afterwards: `succeeded`, `pending_review`, `rejected` or `failed`.
    pub state: String,
    /// The candidate version, when one was trained.
    pub candidate: Option<u32>,
    /// The evaluation, when there was one.
    pub evaluation: Option<EvaluationReport>,
    /// Why the decision went this way.
    pub reason: String,
}

/// What the policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDecision {
    /// Promote without asking.
    Approve,
    /// Ask a person.
    Review,
    /// Do not promote.
    Reject,
}

/// Applies the promotion policy to an evaluation.
#[must_use]
pub fn decide(
    report: &EvaluationReport,
    min_improvement: f64,
    guardrails: &std::collections::BTreeMap<String, f64>,
) -> (PolicyDecision, String) {
    if report.production.is_none() {
        return (
            PolicyDecision::Approve,
            "no production model yet: the first model is promoted".into(),
        );
    }
    let Some(comparison) = &report.comparison else {
        return (
            PolicyDecision::Review,
            format!(
                "the comparison is undefined ({}): a person decides",
                report.undefined.as_deref().unwrap_or("no value")
            ),
        );
    };
    let improvement = comparison.improvement;
    let primary = comparison.primary.name();
    if report.candidate_only_unusable_rows > 0 && evaluate::at_least(improvement, 0.0) {
        return (
            PolicyDecision::Review,
            format!(
                "the candidate has no finite prediction for {} holdout rows that production predicts (it is not scored on them): a person decides",
                report.candidate_only_unusable_rows
            ),
        );
    }
    if !evaluate::at_least(improvement, 0.0) {
        return (
            PolicyDecision::Reject,
            format!(
                "the candidate is {:.2}% worse than production on {primary}",
                -100.0 * improvement
            ),
        );
    }
    for (name, tolerance) in guardrails {
        let Some(metric) = Metric::from_name(name) else {
            continue;
        };
        if let (Some(c), Some(p)) = (
            report.candidate.get(metric),
            report.production.as_ref().and_then(|m| m.get(metric)),
        ) {
            let worse = evaluate::relative_improvement(metric, c, p).map_or(0.0, |i| -i);
            if !evaluate::at_least(*tolerance, worse) {
                return (
                    PolicyDecision::Review,
                    format!(
                        "guardrail {name}: the candidate is {:.2}% worse (tolerance {:.2}%)",
                        100.0 * worse,
                        100.0 * tolerance
                    ),
                );
            }
        }
    }
    if evaluate::at_least(improvement, min_improvement) {
        (
            PolicyDecision::Approve,
            format!(
                "the candidate beats production by {:.2}% on {primary} (threshold {:.2}%)",
                100.0 * improvement,
                100.0 * min_improvement
            ),
        )
    } else {
        (
            PolicyDecision::Review,
            format!(
                "the candidate beats production by {:.2}% on {primary}, under the {:.2}% threshold: a person decides",
                100.0 * improvement,
                100.0 * min_improvement
            ),
        )
    }
}

/// Longest wait for the "model update" notice to be delivered before the update goes ahead
/// anyway (the notice is then still on its way, and in the log if every channel fails).
pub const MAX_NOTICE_WAIT: Duration = Duration::from_secs(300);

struct DataCache {
    stamp: Option<(std::time::SystemTime, u64)>,
    data: Option<Arc<TrainingData>>,
}

/// A run interrupted in a training step the trainer can pick up again.
#[derive(Debug, Clone)]
struct Resume {
    run_id: i64,
    kind: TriggerKind,
    started_ms: i64,
    step_id: i64,
    attempt: u32,
}

struct TriggerState {
    last_schedule_check_ms: i64,
}

/// The lifecycle of one model.
pub struct Lifecycle {
    config: LifecycleConfig,
    store: Arc<Store>,
    control: Arc<ControlPlane>,
    notifier: Notifier,
    trainer: Box<dyn Trainer>,
    clock: Arc<dyn Clock>,
    running: Mutex<()>,
    data: Mutex<DataCache>,
    triggers: Mutex<TriggerState>,
    rollout: Mutex<Option<RolloutState>>,
    last_check: Mutex<Option<RolloutCheck>>,
    last_drift: Mutex<Vec<triggers::FeatureDriftEvidence>>,
    resumable: Mutex<Vec<Resume>>,
    stop: StopSignal,
    grace: Mutex<Option<GraceWait>>,
}

/// An update waiting out its grace period, which an administrator may stop.
struct GraceWait {
    run_id: i64,
    /// Raised to end the wait early (a veto, or a shutdown).
    wake: StopSignal,
    /// Who stopped the update, and why.
    veto: Option<(String, String)>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("model", &self.config.model)
            .field("experiment", &self.config.experiment)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Lifecycle {
    /// A lifecycle for `config` (paths already resolved), writing to `store`, steering
    /// agents through `control`, telling administrators through `notifier`.
    ///
    /// # Errors
    /// [`LifecycleError::Config`] for unusable settings, among them an experiment (or its
    /// production and candidate variants) that the control document does not have.
    pub fn new(
        config: LifecycleConfig,
        store: Arc<Store>,
        control: Arc<ControlPlane>,
        notifier: Notifier,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LifecycleError> {
        config.validate().map_err(LifecycleError::Config)?;
        let trainer: Box<dyn Trainer> = match &config.trainer {
            TrainerConfig::Linfa { alpha } => {
                let mut t = LinfaTrainer::default();
                if let Some(alpha) = alpha {
                    t = t.alpha(*alpha);
                }
                Box::new(t)
            }
            TrainerConfig::Command { command, timeout_s } => {
                // The command must not see the sidecar's secrets.
                let mut t = CommandTrainer::new(command.clone())
                    .map_err(|e| LifecycleError::Config(e.to_string()))?
                    .env_remove("MODELGATE_AGENT_TOKEN")
                    .env_remove("MODELGATE_ADMIN_TOKEN");
                if let Some(s) = timeout_s {
                    t = t.timeout(Duration::from_secs(*s));
                }
                Box::new(t)
            }
            TrainerConfig::Airflow(airflow) => Box::new(
                AirflowTrainer::new((**airflow).clone())
                    .map_err(|e| LifecycleError::Config(e.to_string()))?,
            ),
        };
        let now = clock.now_unix_ms();
        // A scheduled time that passed while the sidecar was down is still due: the schedule
        // counts from the latest run's start (never from the future), not from this start.
        let last_run_ms = store.runs(1)?.first().map(|run| run.started_ms);
        let lifecycle = Lifecycle {
            config,
            store,
            control,
            notifier,
            trainer,
            clock,
            running: Mutex::new(()),
            data: Mutex::new(DataCache {
                stamp: None,
                data: None,
            }),
            triggers: Mutex::new(TriggerState {
                last_schedule_check_ms: last_run_ms.map_or(now, |t| t.min(now)),
            }),
            rollout: Mutex::new(None),
            last_check: Mutex::new(None),
            last_drift: Mutex::new(Vec::new()),
            resumable: Mutex::new(Vec::new()),
            stop: StopSignal::default(),
            grace: Mutex::new(None),
        };
        // A misspelt experiment or variant would train, register and announce models that
        // can never be promoted: refuse it at start.
        lifecycle
            .check_control(&lifecycle.control.current().control.experiments)
            .map_err(|e| LifecycleError::Config(format!("lifecycle.experiment: {e}")))?;
        Ok(lifecycle)
    }

    /// Whether `experiments` keeps what this lifecycle steers: its experiment with the
    /// production and candidate variants. The sidecar refuses a control document without
    /// them, since every later promotion or rollback would fail on it.
    ///
    /// # Errors
    /// A message naming the missing experiment or variant.
    pub fn check_control(&self, experiments: &crate::route::RouterConfig) -> Result<(), String> {
        let mut copy = experiments.clone();
        self.experiment_of(&mut copy)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Asks the lifecycle to stop (the sidecar is shutting down): no run starts or resumes
    /// any more; a training command is killed; a run whose Airflow DAG run is being followed
    /// is left in its training step for a restarted sidecar to resume; a wait for a step's
    /// retry or for the grace period before an update ends, failing its run (production is
    /// unchanged). In-process training (seconds) finishes. Returns at once; the thread
    /// running the pipeline returns soon after.
    pub fn request_stop(&self) {
        self.stop.raise();
        if let Some(wait) = &*lock(&self.grace) {
            wait.wake.raise();
        }
    }

    /// Stops the update of `run_id` (any run when `None`) if it is waiting out its grace
    /// period; returns whether there was one to stop. Its pipeline then rejects the run.
    fn veto_grace(&self, run_id: Option<i64>, actor: &str, reason: &str) -> bool {
        let mut grace = lock(&self.grace);
        match &mut *grace {
            Some(wait) if run_id.is_none_or(|id| id == wait.run_id) => {
                if wait.veto.is_none() {
                    wait.veto = Some((actor.to_owned(), reason.to_owned()));
                }
                wait.wake.raise();
                true
            }
            _ => false,
        }
    }

    /// Waits until the notifier has handled every notification queued so far (sent on each
    /// channel, or given up and logged), for at most [`MAX_NOTICE_WAIT`]; a shutdown or a
    /// veto (raising `wake`) ends the wait early. Returns whether everything was handled.
    fn wait_notices(&self, wake: Option<&StopSignal>) -> bool {
        let started = std::time::Instant::now();
        loop {
            if self.notifier.wait_idle(Duration::from_millis(200)) {
                return true;
            }
            if self.stop.is_raised()
                || wake.is_some_and(StopSignal::is_raised)
                || started.elapsed() >= MAX_NOTICE_WAIT
            {
                return false;
            }
        }
    }

    /// Opens the grace period of `run_id`'s update to vetoes (before its `notifying` step is
    /// recorded, so that whoever sees that step can stop it); returns the signal to wait on.
    fn open_grace(&self, run_id: i64) -> StopSignal {
        let wake = StopSignal::default();
        *lock(&self.grace) = Some(GraceWait {
            run_id,
            wake: wake.clone(),
            veto: None,
        });
        wake
    }

    /// Waits out the grace period opened by [`open_grace`](Self::open_grace) (which stays
    /// open until [`commit_unless_vetoed`](Self::commit_unless_vetoed)); `Err` with who
    /// stopped the update, or with `None` on a shutdown.
    fn wait_grace(
        &self,
        wake: &StopSignal,
        grace: Duration,
    ) -> Result<(), Option<(String, String)>> {
        if !self.stop.is_raised() && !grace.is_zero() {
            wake.sleep(grace);
        }
        let veto = lock(&self.grace).as_ref().and_then(|w| w.veto.clone());
        match veto {
            Some(veto) => Err(Some(veto)),
            None if self.stop.is_raised() => Err(None),
            None => Ok(()),
        }
    }

    /// Commits `run_id`'s update with `commit` unless it was vetoed meanwhile, and closes its
    /// grace period either way. The grace lock is held through the commit, so a veto lands
    /// either before it (nothing changes, the run is rejected) or after it (the update took
    /// effect and the veto finds no update to stop).
    fn commit_unless_vetoed(
        &self,
        run_id: i64,
        commit: impl FnOnce() -> Result<(), LifecycleError>,
    ) -> Result<(), LifecycleError> {
        let mut grace = lock(&self.grace);
        let veto = grace
            .as_ref()
            .filter(|w| w.run_id == run_id)
            .and_then(|w| w.veto.clone());
        let result = match veto {
            Some((actor, reason)) => Err(LifecycleError::Vetoed {
                run_id,
                actor,
                reason,
            }),
            None => commit(),
        };
        grace.take_if(|w| w.run_id == run_id);
        result
    }

    /// Commits `actor`'s rejection of `run_id` (audit row `run.reject` about `subject`, the
    /// run `rejected`); `during` names the phase it happened in, when not a review.
    fn commit_rejection(
        &self,
        run_id: i64,
        subject: &str,
        actor: &str,
        reason: &str,
        during: Option<&str>,
    ) -> Result<(), LifecycleError> {
        let mut detail = serde_json::json!({"run_id": run_id, "actor": actor});
        let mut outcome = serde_json::json!({"rejected_by": actor, "reason": reason});
        if let Some(during) = during {
            detail["during"] = during.into();
            outcome["during"] = during.into();
        }
        self.control.decide(|_| {
            Ok::<_, LifecycleError>(DecisionCommit {
                actor: actor.into(),
                reason: reason.into(),
                kind: "run.reject".into(),
                subject: subject.into(),
                detail: detail.clone(),
                aliases: Vec::new(),
                control: None,
                run: Some((run_id, "rejected".into(), outcome.clone())),
            })
        })?;
        Ok(())
    }

    /// Records a run whose update an administrator stopped in its grace period as rejected.
    fn record_veto(&self, run_id: i64, actor: &str, reason: &str) -> Result<(), LifecycleError> {
        let model = self.config.model.clone();
        self.commit_rejection(run_id, &model, actor, reason, Some("grace_period"))?;
        self.notify(
            NotificationKind::RunFinished,
            format!("update of {model} stopped by {actor} (run {run_id})"),
            format!("{reason}\nProduction is unchanged."),
            serde_json::json!({"run_id": run_id}),
        );
        Ok(())
    }

    /// Replaces the trainer (tests use a failing one).
    #[must_use]
    pub fn with_trainer(mut self, trainer: Box<dyn Trainer>) -> Self {
        self.trainer = trainer;
        self
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// The notifier.
    #[must_use]
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn notify(
        &self,
        kind: NotificationKind,
        subject: String,
        text: String,
        detail: serde_json::Value,
    ) {
        self.notifier
            .notify(Notification::new(kind, subject, text).with_detail(detail));
    }

    fn audit(&self, kind: &str, subject: &str, detail: serde_json::Value) {
        self.audit_as("sidecar", kind, subject, detail);
    }

    /// An audit row of a decision `actor` made (an administrator's approval).
    fn audit_as(&self, actor: &str, kind: &str, subject: &str, detail: serde_json::Value) {
        let entry = NewAudit {
            actor: actor.into(),
            kind: kind.into(),
            subject: subject.into(),
            detail,
        };
        if let Err(e) = self.store.audit(&entry) {
            tracing::error!("audit row {kind} not written: {e}");
        }
    }

    /// Marks runs a stopped sidecar left `running` as failed, with a notification. Runs
    /// waiting for review keep waiting. A run stopped in its training step is kept for
    /// [`resume_interrupted`](Self::resume_interrupted) instead when the trainer can find
    /// its work again ([`Trainer::resumes_runs`]: an Airflow DAG run). Returns the runs
    /// failed.
    ///
    /// # Errors
    /// The store's error.
    pub fn recover(&self) -> Result<Vec<i64>, LifecycleError> {
        let mut failed = Vec::new();
        for run in self.store.active_runs()? {
            if run.state != "running" {
                continue;
            }
            if let Some(resume) = self.resumable_training(&run) {
                tracing::warn!(
                    "run {}: the sidecar stopped during training attempt {}; it will be resumed",
                    run.id,
                    resume.attempt
                );
                lock(&self.resumable).push(resume);
                continue;
            }
            let in_rollout = run
                .steps
                .iter()
                .any(|s| s.name == "rollout" && s.state == "running");
            if in_rollout
                && let Some(production) = self.store.alias(&self.config.model, "production")?
            {
                // Traffic was split towards the candidate: back to production only.
                self.control.decide(|current| {
                    let control = self.control_production_only(
                        current,
                        &production.reference,
                        &production.artifact,
                    )?;
                    Ok::<_, LifecycleError>(DecisionCommit {
                        actor: "sidecar".into(),
                        reason: "the sidecar restarted during a rollout".into(),
                        kind: "rollout.rollback".into(),
                        subject: production.reference.clone(),
                        detail: serde_json::json!({"run_id": run.id}),
                        aliases: Vec::new(),
                        control: Some(control),
                        run: None,
                    })
                })?;
            }
            for step in run.steps.iter().filter(|s| s.state == "running") {
                let _ = self.store.finish_step(
                    step.id,
                    "failed",
                    serde_json::json!({"error": "the sidecar stopped during this step"}),
                );
            }
            self.store.finish_run(
                run.id,
                "failed",
                serde_json::json!({"error": "the sidecar stopped during the run; production is unchanged"}),
            )?;
            self.notify(
                NotificationKind::RunFailed,
                format!("run {} of {} failed", run.id, self.config.model),
                "The sidecar stopped during this run. Production is unchanged; the next trigger starts a new run.".into(),
                serde_json::json!({"run_id": run.id, "trigger": run.trigger}),
            );
            failed.push(run.id);
        }
        Ok(failed)
    }

    /// The runs waiting for [`resume_interrupted`](Self::resume_interrupted).
    #[must_use]
    pub fn resumable_runs(&self) -> Vec<i64> {
        lock(&self.resumable).iter().map(|r| r.run_id).collect()
    }

    /// The resume point of a run stopped in a training step this trainer can pick up again:
    /// its only running step is its last `training` step, with its attempt recorded, and
    /// nothing but reloads of the data came after it (earlier versions recorded a `loading`
    /// step on each resume).
    fn resumable_training(&self, run: &RunRecord) -> Option<Resume> {
        if !self.trainer.resumes_runs() {
            return None;
        }
        let at = run.steps.iter().rposition(|s| s.name == "training")?;
        let last = &run.steps[at];
        let running = run.steps.iter().filter(|s| s.state == "running").count();
        let reloads_only = run.steps[at + 1..]
            .iter()
            .all(|s| s.name == "loading" && s.state == "succeeded");
        if last.state != "running" || running != 1 || !reloads_only {
            return None;
        }
        let attempt = last.detail.get("attempt")?.as_u64()?;
        let kind: TriggerKind =
            serde_json::from_value(serde_json::Value::String(run.trigger.clone())).ok()?;
        Some(Resume {
            run_id: run.id,
            kind,
            started_ms: run.started_ms,
            step_id: last.id,
            attempt: u32::try_from(attempt).ok()?.max(1),
        })
    }

    /// All labelled records up to now (reloaded when the file changes).
    fn data(&self) -> Result<Arc<TrainingData>, String> {
        let path = &self.config.data;
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let stamp = (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len());
        let mut cache = lock(&self.data);
        if cache.stamp == Some(stamp)
            && let Some(data) = &cache.data
        {
            return Ok(data.clone());
        }
        let spec = CsvSpec {
            timestamp_column: self.config.timestamp_column.clone(),
            feature_columns: self.config.features.clone(),
            label_column: self.config.label.clone(),
            label_kind: self.config.label_kind,
            positive_label: self.config.positive_label.clone(),
        };
        let raw = TrainingData::from_csv(path, &spec).map_err(|e| e.to_string())?;
        let data = if self.config.timestamp_unit_ms == 1 {
            raw
        } else {
            let unit = self.config.timestamp_unit_ms;
            rebuild(&raw, |_, t| Some(t.saturating_mul(unit)))?
        };
        let data = Arc::new(data);
        cache.stamp = Some(stamp);
        cache.data = Some(data.clone());
        Ok(data)
    }

    fn label_spec(&self) -> LabelSpec {
        LabelSpec {
            name: self.config.label.clone(),
            positive: match self.config.label_kind {
                crate::artifact::LabelKind::Binary => Some(
                    self.config
                        .positive_label
                        .clone()
                        .unwrap_or_else(|| "1".into()),
                ),
                crate::artifact::LabelKind::Continuous => None,
            },
            kind: self.config.label_kind,
        }
    }

    /// Records with a timestamp after `after_ms` and up to now.
    fn new_records_since(&self, after_ms: Option<i64>) -> Result<u64, String> {
        let data = self.data()?;
        let now = self.clock.now_unix_ms();
        Ok(data
            .timestamps()
            .iter()
            .filter(|&&t| after_ms.is_none_or(|a| t > a) && t <= now)
            .count() as u64)
    }

    /// Where the latest model's data was cut (any version, promoted or not): every record up
    /// to then was available to it, its holdout included. A run cuts its data when it starts
    /// and registers the model when training ends, so records that arrive while it trains
    /// count as new. Models registered without a cut (before it was kept) count from their
    /// registration.
    fn last_training_at(&self) -> Result<Option<i64>, LifecycleError> {
        Ok(self
            .store
            .models()?
            .iter()
            .filter(|m| m.name == self.config.model)
            .map(|m| {
                m.metrics
                    .pointer("/lineage/data_cut_ms")
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(m.created_ms)
            })
            .max())
    }

    /// Whether the last run that `kind` started failed within the last ten check intervals:
    /// a trigger whose condition persists (new records stay new while no model is
    /// trained) then waits instead of starting a failing run every interval.
    fn failed_recently(&self, kind: TriggerKind, now: i64) -> Result<bool, LifecycleError> {
        let backoff = 10 * 1000 * self.config.triggers.check_interval_s as i64;
        Ok(self
            .store
            .runs(50)?
            .iter()
            .find(|r| r.trigger == kind.as_str())
            .is_some_and(|r| {
                r.state == "failed" && r.finished_ms.is_some_and(|f| now - f < backoff)
            }))
    }

    /// Checks every trigger; each firing is written as an audit row.
    ///
    /// # Errors
    /// The store's error.
    pub fn check_triggers(&self) -> Result<Vec<Firing>, LifecycleError> {
        let now = self.clock.now_unix_ms();
        let model = &self.config.model;
        let t = &self.config.triggers;
        let production = self.store.alias(model, "production")?;
        let mut firings = Vec::new();
        if production.is_none() {
            let recent_run = self.store.runs(1)?.into_iter().next().is_some_and(|r| {
                r.finished_ms
                    .is_none_or(|f| now - f < 10 * 1000 * t.check_interval_s as i64)
            });
            if !recent_run {
                firings.push(Firing {
                    kind: TriggerKind::Initial,
                    evidence: serde_json::json!({"reason": "no production model"}),
                });
            }
        }
        if let Some(production) = &production {
            if t.drift
                && let Some(evidence) = self.drift_check(production.version, now)?
            {
                lock(&self.last_drift).clone_from(&evidence);
                let drifted = evidence
                    .iter()
                    .any(|e| e.verdict == crate::drift::Verdict::Drift);
                if drifted && !self.recently_triggered(TriggerKind::Drift, now)? {
                    let drifting: Vec<&str> = evidence
                        .iter()
                        .filter(|e| e.verdict == crate::drift::Verdict::Drift)
                        .map(|e| e.feature.as_str())
                        .collect();
                    self.notify(
                        NotificationKind::DriftAlert,
                        format!("drift in {model}: {}", drifting.join(", ")),
                        format!(
                            "Features of {model}@{} drifted from its training data.",
                            production.version
                        ),
                        serde_json::json!({"features": evidence}),
                    );
                    firings.push(Firing {
                        kind: TriggerKind::Drift,
                        evidence: serde_json::json!({
                            "model": production.reference,
                            "window_s": t.drift_window_s,
                            "features": evidence,
                        }),
                    });
                }
            }
            if let Some(drop) = t.performance_drop
                && let Some(evidence) = self.performance_drop(production, drop, now)?
                && !self.recently_triggered(TriggerKind::Performance, now)?
            {
                firings.push(Firing {
                    kind: TriggerKind::Performance,
                    evidence,
                });
            }
            // One performance firing per check: a floor breach in the same check as a drop
            // adds its evidence to the drop's firing (two firings wrote two audit rows and
            // notices for one run).
            if let Some(floor) = t.performance_min
                && let Some((value, n)) =
                    self.online_metric(now - 1000 * t.drift_window_s as i64, now + 1)?
                && n >= t.min_drift_rows
                && value < floor
            {
                let evidence = serde_json::json!({
                    "model": production.reference,
                    "online_metric": value,
                    "observations": n,
                    "floor": floor,
                });
                match firings
                    .iter_mut()
                    .find(|f| f.kind == TriggerKind::Performance)
                {
                    Some(drop) => {
                        if let Some(fields) = drop.evidence.as_object_mut() {
                            fields.insert("floor".into(), floor.into());
                            fields.insert("floor_online_metric".into(), value.into());
                            fields.insert("floor_observations".into(), n.into());
                        }
                    }
                    None if !self.recently_triggered(TriggerKind::Performance, now)? => {
                        firings.push(Firing {
                            kind: TriggerKind::Performance,
                            evidence,
                        });
                    }
                    None => {}
                }
            }
        }
        if let Some(threshold) = t.volume {
            let since = self.last_training_at()?;
            let from_csv = self
                .new_records_since(since)
                .map_err(LifecycleError::Config)?;
            let from_agents = self.store.labelled_seen_since(since.unwrap_or(i64::MIN))?;
            let new = from_csv + from_agents;
            if since.is_some()
                && triggers::volume_fires(new, threshold)
                && !self.failed_recently(TriggerKind::Volume, now)?
            {
                firings.push(Firing {
                    kind: TriggerKind::Volume,
                    evidence: serde_json::json!({
                        "new_records": new,
                        "from_data": from_csv,
                        "from_agents": from_agents,
                        "threshold": threshold,
                        "since_ms": since,
                    }),
                });
            }
        }
        if let Some(schedule) = t.schedule.as_deref().filter(|s| !s.is_empty()) {
            let cron = triggers::parse_cron(schedule).map_err(LifecycleError::Config)?;
            let mut state = lock(&self.triggers);
            if let Some(at) = triggers::cron_fired(&cron, state.last_schedule_check_ms, now) {
                firings.push(Firing {
                    kind: TriggerKind::Schedule,
                    evidence: serde_json::json!({"schedule": schedule, "scheduled_ms": at}),
                });
            }
            state.last_schedule_check_ms = now;
        }
        for f in &firings {
            self.audit(
                &format!("trigger.{}", f.kind.as_str()),
                model,
                f.evidence.clone(),
            );
        }
        Ok(firings)
    }

    /// Whether a run started by `kind` began within the drift window.
    fn recently_triggered(&self, kind: TriggerKind, now: i64) -> Result<bool, LifecycleError> {
        let window = 1000 * self.config.triggers.drift_window_s as i64;
        Ok(self
            .store
            .runs(50)?
            .iter()
            .any(|r| r.trigger == kind.as_str() && now - r.started_ms < window))
    }

    /// Drift of the production variant over the window, when there are enough rows.
    fn drift_check(
        &self,
        version: u32,
        now: i64,
    ) -> Result<Option<Vec<triggers::FeatureDriftEvidence>>, LifecycleError> {
        let Some(bytes) = self.store.reference_profile(&self.config.model, version)? else {
            return Ok(None);
        };
        let Ok(reference) = postcard::from_bytes::<Vec<(String, FeatureProfile)>>(&bytes) else {
            tracing::warn!(
                "the reference profile of {}@{version} does not decode",
                self.config.model
            );
            return Ok(None);
        };
        let window = 1000 * self.config.triggers.drift_window_s as i64;
        let totals = self
            .store
            .totals(Some(&self.config.experiment), now - window, now + 1)?;
        let Some(current) = totals
            .iter()
            .find(|t| t.variant == self.config.production_variant)
        else {
            return Ok(None);
        };
        if current.metrics.feature_rows < self.config.triggers.min_drift_rows {
            return Ok(None);
        }
        Ok(Some(triggers::drift_evidence(
            &reference,
            &current.metrics.features,
            &self.config.drift,
        )))
    }

    /// Whether production's online metric fell `drop` below its value in the first window
    /// after its promotion; the evidence when it did.
    fn performance_drop(
        &self,
        production: &super::store::ModelRecord,
        drop: f64,
        now: i64,
    ) -> Result<Option<serde_json::Value>, LifecycleError> {
        let window = 1000 * self.config.triggers.drift_window_s as i64;
        let Some(promoted_at) = self
            .store
            .alias_history(&self.config.model)?
            .into_iter()
            .find(|c| c.alias == "production" && c.to_version == production.version)
            .map(|c| c.at_ms)
        else {
            return Ok(None);
        };
        if now < promoted_at + 2 * window {
            return Ok(None);
        }
        let min = self.config.triggers.min_drift_rows;
        let (Some((baseline, n0)), Some((current, n1))) = (
            self.online_metric(promoted_at, promoted_at + window)?,
            self.online_metric(now - window, now + 1)?,
        ) else {
            return Ok(None);
        };
        if n0 < min || n1 < min || current >= baseline - drop {
            return Ok(None);
        }
        Ok(Some(serde_json::json!({
            "model": production.reference,
            "online_metric": current,
            "observations": n1,
            "at_promotion": baseline,
            "observations_at_promotion": n0,
            "drop": drop,
        })))
    }

    /// Production's online success rate (binary) or outcome mean over `[from, to)`, with
    /// its count.
    fn online_metric(&self, from: i64, to: i64) -> Result<Option<(f64, u64)>, LifecycleError> {
        let totals = self.store.totals(Some(&self.config.experiment), from, to)?;
        let Some(m) = totals
            .iter()
            .find(|t| t.variant == self.config.production_variant)
            .map(|t| &t.metrics)
        else {
            return Ok(None);
        };
        Ok(if m.binary.trials > 0 {
            Some((
                m.binary.successes as f64 / m.binary.trials as f64,
                m.binary.trials,
            ))
        } else if m.outcome.count > 0 {
            Some((m.outcome.mean, m.outcome.count))
        } else {
            None
        })
    }

    /// Checks the triggers and, when one fires and no run is in progress, runs the
    /// pipeline. Returns the outcome of the run it started.
    ///
    /// # Errors
    /// The store's error; a failed run is an `Ok` outcome with state `failed`.
    pub fn tick(&self) -> Result<Option<RunOutcome>, LifecycleError> {
        if self.stop.is_raised() {
            return Ok(None);
        }
        let Ok(_guard) = self.running.try_lock() else {
            return Ok(None);
        };
        let rollout = lock(&self.rollout).clone();
        if let Some(state) = rollout {
            return self.advance_rollout(state);
        }
        // A stored run still in progress (an Airflow run waiting to be followed again after
        // a restart) would refuse a new run: leave the triggers unchecked until it ends, so
        // that a schedule occurrence is not consumed by a run that cannot start.
        if self.run_in_progress()? {
            return Ok(None);
        }
        let firings = self.check_triggers()?;
        let Some(first) = firings.first() else {
            return Ok(None);
        };
        let evidence = serde_json::json!({
            "trigger": first.evidence,
            "also_fired": firings[1..].iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(),
        });
        self.run_locked(first.kind, evidence).map(Some)
    }

    /// Runs the pipeline now for `kind` with `evidence` (an administrator's retrain).
    ///
    /// # Errors
    /// [`LifecycleError::Busy`] when a run is in progress.
    pub fn run(
        &self,
        kind: TriggerKind,
        evidence: serde_json::Value,
    ) -> Result<RunOutcome, LifecycleError> {
        if self.stop.is_raised() {
            return Err(LifecycleError::Refused(
                "the sidecar is shutting down: no new run starts".into(),
            ));
        }
        let Ok(_guard) = self.running.try_lock() else {
            return Err(LifecycleError::Busy);
        };
        self.audit(
            &format!("trigger.{}", kind.as_str()),
            &self.config.model,
            evidence.clone(),
        );
        self.run_locked(kind, evidence)
    }

    /// Whether the store holds a run in state `running`.
    fn run_in_progress(&self) -> Result<bool, LifecycleError> {
        Ok(self
            .store
            .active_runs()?
            .iter()
            .any(|r| r.state == "running"))
    }

    fn run_locked(
        &self,
        kind: TriggerKind,
        evidence: serde_json::Value,
    ) -> Result<RunOutcome, LifecycleError> {
        if lock(&self.rollout).is_some() || self.run_in_progress()? {
            return Err(LifecycleError::Busy);
        }
        let model = self.config.model.clone();
        let run_id = self.store.create_run(kind.as_str(), evidence.clone())?;
        tracing::info!("run {run_id}: {} trigger, training {model}", kind.as_str());
        self.notify(
            NotificationKind::RunStarted,
            format!("run {run_id} of {model} started ({})", kind.as_str()),
            format!("A {} trigger started pipeline run {run_id}.", kind.as_str()),
            serde_json::json!({"run_id": run_id, "trigger": kind.as_str(), "evidence": evidence}),
        );
        let now = self.clock.now_unix_ms();
        let result = self.pipeline(run_id, kind, now, None);
        self.conclude(run_id, result)
    }

    /// Records how a pipeline ended: a failed step fails the run (production unchanged) and
    /// tells the administrators.
    fn conclude(
        &self,
        run_id: i64,
        result: Result<RunOutcome, LifecycleError>,
    ) -> Result<RunOutcome, LifecycleError> {
        let model = &self.config.model;
        match result {
            Ok(outcome) => Ok(outcome),
            Err(LifecycleError::Vetoed {
                run_id,
                actor,
                reason,
            }) => {
                self.record_veto(run_id, &actor, &reason)?;
                Ok(RunOutcome {
                    run_id,
                    state: "rejected".into(),
                    candidate: None,
                    evaluation: None,
                    reason: format!("stopped by {actor} during the grace period: {reason}"),
                })
            }
            Err(e @ LifecycleError::Interrupted { .. }) => {
                tracing::warn!("{e}");
                self.audit(
                    "run.interrupted",
                    model,
                    serde_json::json!({"run_id": run_id, "reason": e.to_string()}),
                );
                Err(e)
            }
            Err(LifecycleError::StepFailed {
                run_id,
                step,
                reason,
            }) => {
                let outcome = serde_json::json!({"step": step, "error": reason});
                if let Err(e) = self.store.finish_run(run_id, "failed", outcome.clone()) {
                    tracing::error!("run {run_id} could not be marked failed: {e}");
                }
                self.notify(
                    NotificationKind::RunFailed,
                    format!("run {run_id} of {model} failed at {step}"),
                    format!("{reason}\nProduction is unchanged."),
                    outcome,
                );
                Ok(RunOutcome {
                    run_id,
                    state: "failed".into(),
                    candidate: None,
                    evaluation: None,
                    reason,
                })
            }
            Err(e) => {
                let _ = self.store.finish_run(
                    run_id,
                    "failed",
                    serde_json::json!({"error": e.to_string()}),
                );
                self.notify(
                    NotificationKind::RunFailed,
                    format!("run {run_id} of {model} failed"),
                    format!("{e}\nProduction is unchanged."),
                    serde_json::json!({"run_id": run_id}),
                );
                Err(e)
            }
        }
    }

    /// Resumes the runs [`recover`](Self::recover) found in a training step that the
    /// trainer can pick up again (an Airflow DAG run keeps running while the sidecar is
    /// down): each follows its external run and continues to evaluation and decision.
    /// Returns how each ended; none when there is nothing to resume or a run is in progress.
    pub fn resume_interrupted(&self) -> Vec<Result<RunOutcome, LifecycleError>> {
        let Ok(_guard) = self.running.try_lock() else {
            return Vec::new();
        };
        let pending = std::mem::take(&mut *lock(&self.resumable));
        let mut outcomes = Vec::new();
        for resume in pending {
            if self.stop.is_raised() {
                // The run stays as it is in the store: the next start resumes it.
                break;
            }
            let run_id = resume.run_id;
            tracing::info!(
                "run {run_id}: resuming its training attempt {} after a restart",
                resume.attempt
            );
            self.audit(
                "run.resumed",
                &self.config.model,
                serde_json::json!({"run_id": run_id, "attempt": resume.attempt, "step_id": resume.step_id}),
            );
            let result = self.pipeline(
                run_id,
                resume.kind,
                resume.started_ms,
                Some((resume.step_id, resume.attempt)),
            );
            outcomes.push(self.conclude(run_id, result));
        }
        outcomes
    }

    /// Runs a step that may be repeated (it writes nothing but its own output): a failure
    /// is retried `step_retries` times with doubling waits, each attempt recorded.
    fn retried_step<T>(
        &self,
        run_id: i64,
        name: &str,
        mut f: impl FnMut() -> Result<(T, serde_json::Value), String>,
    ) -> Result<T, LifecycleError> {
        self.attempts(
            run_id,
            name,
            None,
            |attempt| serde_json::json!({"attempt": attempt}),
            |_| f(),
        )
    }

    /// [`retried_step`](Self::retried_step) where `f` and the first detail of each attempt
    /// get the attempt number (from 1), and `resume` = (step id, attempt) continues an
    /// attempt that is already recorded as running.
    fn attempts<T>(
        &self,
        run_id: i64,
        name: &str,
        resume: Option<(i64, u32)>,
        start_detail: impl Fn(u32) -> serde_json::Value,
        mut f: impl FnMut(u32) -> Result<(T, serde_json::Value), String>,
    ) -> Result<T, LifecycleError> {
        let (mut resumed, mut attempt) = match resume {
            Some((step_id, attempt)) => (Some(step_id), attempt.max(1)),
            None => (None, 1),
        };
        loop {
            let step_id = match resumed.take() {
                Some(step_id) => step_id,
                None => self.store.add_step(run_id, name, start_detail(attempt))?,
            };
            match f(attempt) {
                Ok((value, detail)) => {
                    self.store.finish_step(step_id, "succeeded", detail)?;
                    return Ok(value);
                }
                Err(_)
                    if self.stop.is_raised()
                        && name == "training"
                        && self.trainer.resumes_runs() =>
                {
                    // The DAG run goes on in Airflow: leave the step running, as a crash
                    // would, so that the next start follows the same DAG run.
                    return Err(LifecycleError::Interrupted {
                        run_id,
                        step: name.into(),
                    });
                }
                Err(reason) => {
                    // Once the sidecar is stopping, a failed step is not retried.
                    let stopping = self.stop.is_raised();
                    let reason = if reason == TrainError::Stopped.to_string() {
                        "the sidecar shut down during this step".to_owned()
                    } else {
                        reason
                    };
                    let mut detail = start_detail(attempt);
                    if let serde_json::Value::Object(map) = &mut detail {
                        map.insert("error".into(), reason.clone().into());
                    }
                    let _ = self.store.finish_step(step_id, "failed", detail);
                    if stopping || attempt > self.config.step_retries {
                        return Err(LifecycleError::StepFailed {
                            run_id,
                            step: name.into(),
                            reason,
                        });
                    }
                    let wait = self
                        .config
                        .step_retry_base_ms
                        .saturating_mul(1u64 << (attempt - 1).min(16));
                    tracing::warn!("run {run_id}: {name} failed ({reason}); retrying in {wait} ms");
                    // Backoff between attempts of a failing step (the pipeline thread waits;
                    // nothing else is blocked, and a shutdown cuts it short).
                    if self.stop.sleep(Duration::from_millis(wait)) {
                        return Err(LifecycleError::StepFailed {
                            run_id,
                            step: name.into(),
                            reason: format!(
                                "the sidecar shut down before attempt {} ({reason})",
                                attempt + 1
                            ),
                        });
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Runs one step: `f` gets the step's id; its error fails the step and the run.
    fn step<T>(
        &self,
        run_id: i64,
        name: &str,
        f: impl FnOnce() -> Result<(T, serde_json::Value), String>,
    ) -> Result<T, LifecycleError> {
        let step_id = self.store.add_step(run_id, name, serde_json::json!({}))?;
        match f() {
            Ok((value, detail)) => {
                self.store.finish_step(step_id, "succeeded", detail)?;
                Ok(value)
            }
            Err(reason) => {
                let _ =
                    self.store
                        .finish_step(step_id, "failed", serde_json::json!({"error": reason}));
                Err(LifecycleError::StepFailed {
                    run_id,
                    step: name.into(),
                    reason,
                })
            }
        }
    }

    /// The pipeline from loading to the decision; `now` bounds the data used, `resume`
    /// continues a running training attempt (step id, attempt).
    fn pipeline(
        &self,
        run_id: i64,
        kind: TriggerKind,
        now: i64,
        resume: Option<(i64, u32)>,
    ) -> Result<RunOutcome, LifecycleError> {
        let started_ms = self.store.run(run_id)?.map_or(now, |run| run.started_ms);
        let mut load = || {
            let all = self.data()?;
            let shipped = self
                .store
                .labelled_records(i64::MIN, now)
                .map_err(|e| e.to_string())?;
            let agents = shipped.len();
            let (all, unusable) = with_records(&all, &shipped)?;
            let upto = rebuild(&all, |_, t| (t <= now).then_some(t))?;
            let upto = match self.config.training_window {
                Some(n) if upto.len() > n => {
                    let start = upto.len() - n;
                    rebuild(&upto, |i, t| (i >= start).then_some(t))?
                }
                _ => upto,
            };
            let (train, holdout) = upto.split_by_time(self.config.holdout_fraction);
            let detail = serde_json::json!({
                "rows": upto.len(),
                "rows_from_agents": agents,
                "agent_records_unusable": unusable,
                "train_rows": train.len(),
                "holdout_rows": holdout.len(),
                "range": upto.range(),
                "skipped": all.skipped(),
            });
            Ok(((train, holdout), detail))
        };
        let (train, holdout) = match resume {
            None => self.retried_step(run_id, "loading", &mut load)?,
            // A resumed run reloads the same rows (the same bound, `now`) without a second
            // `loading` step, so that its steps still end with the training it resumes.
            Some((step_id, _)) => match load() {
                Ok((data, _)) => data,
                Err(reason) => {
                    let reason = format!("reloading the data to resume: {reason}");
                    let detail = serde_json::json!({"error": reason});
                    let _ = self.store.finish_step(step_id, "failed", detail);
                    return Err(LifecycleError::StepFailed {
                        run_id,
                        step: "training".into(),
                        reason,
                    });
                }
            },
        };

        let output_dir = self.config.artifacts.clone();
        let run_key =
            |attempt: u32| training_run_key(&self.config.model, run_id, started_ms, attempt);
        let trained: TrainedModel = self.attempts(
            run_id,
            "training",
            resume,
            |attempt| serde_json::json!({"attempt": attempt, "run_key": run_key(attempt)}),
            |attempt| {
                let job = TrainingJob {
                    model_name: self.config.model.clone(),
                    run_id,
                    run_key: run_key(attempt),
                    data: &train,
                    features: self.config.features.clone(),
                    label: self.label_spec(),
                    output_dir: output_dir.clone(),
                    stop: self.stop.clone(),
                };
                let mut progress = |p: super::train::TrainProgress| {
                    tracing::info!(
                        "run {run_id} training: {}",
                        serde_json::to_string(&p).unwrap_or_default()
                    );
                };
                let trained = self
                    .trainer
                    .train(&job, &mut progress)
                    .map_err(|e| e.to_string())?;
                let detail = serde_json::json!({
                    "attempt": attempt,
                    "run_key": job.run_key,
                    "artifact": trained.artifact_path,
                    "sha256": trained.sha256,
                    "log": trained.log,
                    "external_run": trained.external_run,
                    "training": trained.artifact.training,
                    "trained_by": trained.artifact.trained_by,
                });
                Ok((trained, detail))
            },
        )?;

        let record = self.step(run_id, "registering", || {
            let profile = reference_profile(&train);
            let bytes = postcard::to_stdvec(&profile).map_err(|e| e.to_string())?;
            let new = NewModel {
                name: self.config.model.clone(),
                artifact: trained.artifact_path.display().to_string(),
                sha256: trained.sha256.clone(),
                trained_from_ms: Some(trained.artifact.training.from_ms),
                trained_to_ms: Some(trained.artifact.training.to_ms),
                metrics: serde_json::json!({
                    "offline": trained.artifact.metrics,
                    "lineage": {"run_id": run_id, "trigger": kind.as_str(), "data_cut_ms": now},
                }),
                reference_profile: Some(bytes),
            };
            let record = self.store.register_model(&new).map_err(|e| e.to_string())?;
            let detail =
                serde_json::json!({"version": record.version, "reference": record.reference});
            Ok((record, detail))
        })?;

        let production = self.store.alias(&self.config.model, "production")?;
        let primary = self.config.primary();
        let evaluation: EvaluationReport = self.retried_step(run_id, "evaluating", || {
            let artifact = match &production {
                Some(p) => Some(
                    ModelArtifact::load(Path::new(&p.artifact))
                        .map_err(|e| format!("cannot load production {}: {e}", p.reference))?,
                ),
                None => None,
            };
            // Both models are scored on rows production never trained on: backfilled rows,
            // or a larger holdout fraction or training window, can move the holdout back
            // into production's training range, where production would be scored on its
            // own training rows.
            let newer;
            let (compared, overlap) = match &artifact {
                Some(p) => {
                    newer = holdout.window(p.training.to_ms.saturating_add(1), i64::MAX);
                    if newer.is_empty() {
                        return Err(format!(
                            "all {} holdout rows are at or before the end of production's \
                             training data ({} ms): no row scores both models fairly; retrain \
                             when newer labelled data has arrived",
                            holdout.len(),
                            p.training.to_ms
                        ));
                    }
                    (&newer, holdout.len() - newer.len())
                }
                None => (&holdout, 0),
            };
            let report =
                EvaluationReport::evaluate(&trained.artifact, artifact.as_ref(), compared, primary)
                    .map_err(|e| e.to_string())?;
            let mut detail = serde_json::to_value(&report).map_err(|e| e.to_string())?;
            if let Some(fields) = detail.as_object_mut() {
                fields.insert(
                    "holdout_rows_left_out_as_production_training".into(),
                    overlap.into(),
                );
            }
            Ok((report, detail))
        })?;

        let (decision, reason) = decide(
            &evaluation,
            self.config.min_improvement,
            &self.config.guardrails,
        );
        self.step(run_id, "deciding", || {
            Ok((
                (),
                serde_json::json!({"decision": decision, "reason": reason, "candidate": record.reference}),
            ))
        })?;
        let version = record.version;
        match decision {
            PolicyDecision::Approve => {
                self.promote(run_id, version, "sidecar", &reason, Some(&evaluation))?;
                // A rollout keeps the run going until it promotes or rolls back.
                let state = if self.rollout().is_some() {
                    "running"
                } else {
                    "succeeded"
                };
                Ok(RunOutcome {
                    run_id,
                    state: state.into(),
                    candidate: Some(version),
                    evaluation: Some(evaluation),
                    reason,
                })
            }
            PolicyDecision::Reject => {
                let evidence = serde_json::to_value(&evaluation).unwrap_or_default();
                self.control.decide(|_| {
                    Ok::<_, LifecycleError>(DecisionCommit {
                        actor: "sidecar".into(),
                        reason: reason.clone(),
                        kind: "run.reject".into(),
                        subject: record.reference.clone(),
                        detail: serde_json::json!({"run_id": run_id, "evaluation": evidence}),
                        aliases: Vec::new(),
                        control: None,
                        run: Some((
                            run_id,
                            "rejected".into(),
                            serde_json::json!({"reason": reason}),
                        )),
                    })
                })?;
                self.notify(
                    NotificationKind::RunFinished,
                    format!("{} rejected", record.reference),
                    reason.clone(),
                    serde_json::json!({"run_id": run_id, "evaluation": evidence}),
                );
                Ok(RunOutcome {
                    run_id,
                    state: "rejected".into(),
                    candidate: Some(version),
                    evaluation: Some(evaluation),
                    reason,
                })
            }
            PolicyDecision::Review => {
                let evidence = serde_json::to_value(&evaluation).unwrap_or_default();
                self.store.finish_run(
                    run_id,
                    "pending_review",
                    serde_json::json!({
                        "candidate": version,
                        "reason": reason,
                        "evaluation": evidence,
                        "production": production.as_ref().map(|p| p.version),
                    }),
                )?;
                self.audit(
                    "run.pending_review",
                    &record.reference,
                    serde_json::json!({"run_id": run_id, "reason": reason, "evaluation": evidence}),
                );
                self.notify(
                    NotificationKind::ReviewNeeded,
                    format!("{} waits for review (run {run_id})", record.reference),
                    format!("{reason}\nApprove: modelgate approve {run_id} --reason ...\nReject: modelgate reject {run_id} --reason ..."),
                    serde_json::json!({"run_id": run_id, "evaluation": evidence}),
                );
                Ok(RunOutcome {
                    run_id,
                    state: "pending_review".into(),
                    candidate: Some(version),
                    evaluation: Some(evaluation),
                    reason,
                })
            }
        }
    }

    /// The "model update" notification, then the grace period (a real wait: administrators
    /// may intervene before it ends), as the run's `notifying` step.
    fn notify_update(
        &self,
        run_id: i64,
        reference: &str,
        actor: &str,
        reason: &str,
        evaluation: Option<&EvaluationReport>,
    ) -> Result<(), LifecycleError> {
        let old = self.store.alias(&self.config.model, "production")?;
        let grace = self.notifier.grace_period();
        let mut vetoed = None;
        let wake = self.open_grace(run_id);
        self.step(run_id, "notifying", || {
            self.notify(
                NotificationKind::ModelUpdate,
                match &old {
                    Some(o) => format!(
                        "{reference} will replace {} in {}s",
                        o.reference,
                        grace.as_secs()
                    ),
                    None => format!("{reference} goes into production in {}s", grace.as_secs()),
                },
                format!("{reason}\nDecided by {actor} in run {run_id}."),
                serde_json::json!({
                    "run_id": run_id,
                    "from": old.as_ref().map(|o| o.reference.clone()),
                    "to": reference,
                    "evaluation": evaluation,
                    "grace_period_s": grace.as_secs(),
                }),
            );
            // The notice goes out before the update: wait until the notifier has delivered it
            // (or given up and logged it), behind whatever was queued before it.
            let notice_out = self.wait_notices(Some(&wake));
            {
                match self.wait_grace(&wake, grace) {
                    Ok(()) => {}
                    Err(Some((actor, reason))) => {
                        let why = format!(
                            "stopped by {actor} during the grace period: {reason}; production is unchanged"
                        );
                        vetoed = Some((actor, reason));
                        return Err(why);
                    }
                    Err(None) => {
                        return Err(
                            "the sidecar shut down during the grace period; production is unchanged"
                                .into(),
                        );
                    }
                }
            }
            Ok((
                (),
                serde_json::json!({"grace_period_s": grace.as_secs(), "notice_delivered": notice_out}),
            ))
        })
        .inspect_err(|_| {
            // Nothing is committed after a failed step: close the period.
            lock(&self.grace).take_if(|w| w.run_id == run_id);
        })
        .map_err(|e| match vetoed.take() {
            Some((actor, reason)) => LifecycleError::Vetoed {
                run_id,
                actor,
                reason,
            },
            None => e,
        })
    }

    /// Notifies, waits the grace period, then either promotes `version` at once (first
    /// model, or `strategy = "immediate"`) or starts its guarded rollout.
    fn promote(
        &self,
        run_id: i64,
        version: u32,
        actor: &str,
        reason: &str,
        evaluation: Option<&EvaluationReport>,
    ) -> Result<(), LifecycleError> {
        let model = self.config.model.clone();
        let reference = format!("{model}@{version}");
        let record = self
            .store
            .model(&model, version)?
            .ok_or_else(|| LifecycleError::Refused(format!("{reference} is not registered")))?;
        let old = self.store.alias(&model, "production")?;
        let rollout = self.config.rollout.strategy != RolloutStrategy::Immediate
            && old.as_ref().is_some_and(|o| o.version != version);
        self.notify_update(run_id, &reference, actor, reason, evaluation)?;
        self.commit_unless_vetoed(run_id, || {
            if rollout {
                self.start_rollout(run_id, version, &reference, &record.artifact, actor, reason)
            } else {
                self.commit_promotion(run_id, version, actor, reason, evaluation)
            }
        })
    }

    /// Moves the aliases, serves `version` to everyone and finishes the run, in one
    /// transaction.
    fn commit_promotion(
        &self,
        run_id: i64,
        version: u32,
        actor: &str,
        reason: &str,
        evaluation: Option<&EvaluationReport>,
    ) -> Result<(), LifecycleError> {
        let model = self.config.model.clone();
        let reference = format!("{model}@{version}");
        let record = self
            .store
            .model(&model, version)?
            .ok_or_else(|| LifecycleError::Refused(format!("{reference} is not registered")))?;
        let old = self.store.alias(&model, "production")?;
        let step_id = self
            .store
            .add_step(run_id, "promoting", serde_json::json!({}))?;
        let committed = self.control.decide(|current| {
            let control = self.control_production_only(current, &reference, &record.artifact)?;
            let mut aliases = vec![AliasMove {
                name: model.clone(),
                alias: "production".into(),
                version,
            }];
            if let Some(old) = &old
                && old.version != version
            {
                aliases.push(AliasMove {
                    name: model.clone(),
                    alias: "previous".into(),
                    version: old.version,
                });
            }
            Ok::<_, LifecycleError>(DecisionCommit {
                actor: actor.into(),
                reason: reason.into(),
                kind: "model.promote".into(),
                subject: reference.clone(),
                detail: serde_json::json!({
                    "run_id": run_id,
                    "from": old.as_ref().map(|o| o.reference.clone()),
                    "to": reference,
                    "improvement": evaluation.and_then(|e| e.comparison.map(|c| c.improvement)),
                    "evaluation": evaluation,
                }),
                aliases,
                control: Some(control),
                run: Some((
                    run_id,
                    "succeeded".into(),
                    serde_json::json!({"promoted": reference, "reason": reason}),
                )),
            })
        });
        match committed {
            Ok(_) => {
                let _ = self.store.finish_step(
                    step_id,
                    "succeeded",
                    serde_json::json!({"production": reference}),
                );
            }
            Err(e) => {
                let _ = self.store.finish_step(
                    step_id,
                    "failed",
                    serde_json::json!({"error": e.to_string()}),
                );
                return Err(LifecycleError::StepFailed {
                    run_id,
                    step: "promoting".into(),
                    reason: e.to_string(),
                });
            }
        }
        tracing::info!("run {run_id}: {reference} is production");
        self.notify(
            NotificationKind::Promotion,
            format!("{reference} is production"),
            format!("{reason}\nAgents swap models at their next control poll."),
            serde_json::json!({"run_id": run_id, "from": old.map(|o| o.reference), "to": reference}),
        );
        Ok(())
    }

    fn experiment_of<'a>(
        &self,
        experiments: &'a mut crate::route::RouterConfig,
    ) -> Result<&'a mut crate::route::ExperimentConfig, LifecycleError> {
        let name = &self.config.experiment;
        let experiment = experiments
            .experiments
            .iter_mut()
            .find(|e| &e.name == name)
            .ok_or_else(|| {
                LifecycleError::Refused(format!("the control document has no experiment `{name}`"))
            })?;
        for variant in [
            &self.config.production_variant,
            &self.config.candidate_variant,
        ] {
            if !experiment.variants.iter().any(|v| &v.name == variant) {
                return Err(LifecycleError::Refused(format!(
                    "experiment `{name}` has no variant `{variant}`"
                )));
            }
        }
        Ok(experiment)
    }

    /// The current document with everyone on the production variant, serving `reference`.
    fn control_production_only(
        &self,
        current: &Control,
        reference: &str,
        artifact: &str,
    ) -> Result<Control, LifecycleError> {
        let mut experiments = current.experiments.clone();
        let experiment = self.experiment_of(&mut experiments)?;
        experiment.strategy = Some("immediate".into());
        experiment.target = Some(self.config.production_variant.clone());
        experiment.percent = None;
        experiment.candidate = None;
        experiment.schedule.clear();
        for variant in &mut experiment.variants {
            variant.weight = None;
            if variant.name == self.config.production_variant {
                variant.model = Some(reference.to_owned());
            } else if variant.name == self.config.candidate_variant {
                variant.model = None;
            }
        }
        let mut models = current.models.clone();
        models.remove(&format!(
            "{}/{}",
            self.config.experiment, self.config.candidate_variant
        ));
        models.insert(
            format!(
                "{}/{}",
                self.config.experiment, self.config.production_variant
            ),
            ModelAssignment {
                reference: reference.to_owned(),
                location: Some(artifact.to_owned()),
            },
        );
        super::control::validate(&experiments, &models).map_err(LifecycleError::Refused)?;
        Ok(super::control::make_control(experiments, models))
    }

    /// The current document with `percent` of the traffic on the candidate variant serving
    /// `reference`.
    fn control_canary(
        &self,
        current: &Control,
        percent: f64,
        reference: &str,
        artifact: &str,
    ) -> Result<Control, LifecycleError> {
        let mut experiments = current.experiments.clone();
        let experiment = self.experiment_of(&mut experiments)?;
        experiment.strategy = Some("canary".into());
        experiment.target = None;
        experiment.percent = Some(percent);
        experiment.candidate = Some(self.config.candidate_variant.clone());
        experiment.schedule.clear();
        for variant in &mut experiment.variants {
            variant.weight = None;
            if variant.name == self.config.candidate_variant {
                variant.model = Some(reference.to_owned());
            }
        }
        let mut models = current.models.clone();
        models.insert(
            format!(
                "{}/{}",
                self.config.experiment, self.config.candidate_variant
            ),
            ModelAssignment {
                reference: reference.to_owned(),
                location: Some(artifact.to_owned()),
            },
        );
        super::control::validate(&experiments, &models).map_err(LifecycleError::Refused)?;
        Ok(super::control::make_control(experiments, models))
    }

    /// Notifies and sends the candidate its first share of traffic.
    fn start_rollout(
        &self,
        run_id: i64,
        version: u32,
        reference: &str,
        artifact: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(), LifecycleError> {
        let percent = self.config.rollout.steps[0];
        self.store.add_step(
            run_id,
            "rollout",
            serde_json::json!({"candidate": reference, "steps": self.config.rollout.steps}),
        )?;
        self.control.decide(|current| {
            let control = self.control_canary(current, percent, reference, artifact)?;
            Ok::<_, LifecycleError>(DecisionCommit {
                actor: actor.into(),
                reason: reason.into(),
                kind: "rollout.start".into(),
                subject: reference.into(),
                detail: serde_json::json!({
                    "run_id": run_id,
                    "percent": percent,
                    "strategy": self.config.rollout.strategy,
                }),
                aliases: vec![AliasMove {
                    name: self.config.model.clone(),
                    alias: "candidate".into(),
                    version,
                }],
                control: Some(control),
                // An approved run that waited for review is running again.
                run: Some((
                    run_id,
                    "running".into(),
                    serde_json::json!({"rollout": reference}),
                )),
            })
        })?;
        let now = self.clock.now_unix_ms();
        *lock(&self.rollout) = Some(RolloutState {
            run_id,
            version,
            reference: reference.into(),
            artifact: artifact.into(),
            step: 0,
            step_started_ms: now,
            started_ms: now,
            srm_alerted: false,
        });
        tracing::info!("run {run_id}: rollout of {reference} starts at {percent}%");
        self.notify(
            NotificationKind::ModelUpdate,
            format!("rollout of {reference} starts at {percent}%"),
            format!(
                "{reason}\nThe candidate now serves {percent}% of the traffic; guardrails are watched."
            ),
            serde_json::json!({"run_id": run_id, "percent": percent}),
        );
        Ok(())
    }

    /// Why a retrain asked for now would be refused when its turn comes, if it would: a
    /// rollout in progress (rollouts last far longer than the command queue). A run in
    /// progress is not a reason: a queued retrain starts after it. The HTTP API uses this to
    /// answer 409 at once instead of queueing a retrain that would be dropped.
    #[must_use]
    pub fn busy(&self) -> Option<String> {
        self.rollout().map(|r| {
            format!(
                "run {} is rolling out {} (step {}); wait for it to finish or stop it with a rollback",
                r.run_id,
                r.reference,
                r.step + 1
            )
        })
    }

    /// The rollout in progress, if any.
    #[must_use]
    pub fn rollout(&self) -> Option<RolloutState> {
        lock(&self.rollout).clone()
    }

    /// The drift statistics of the latest check, per feature (for `/metrics`).
    #[must_use]
    pub fn last_drift(&self) -> Vec<triggers::FeatureDriftEvidence> {
        lock(&self.last_drift).clone()
    }

    /// The latest rollout check.
    #[must_use]
    pub fn last_rollout_check(&self) -> Option<RolloutCheck> {
        lock(&self.last_check).clone()
    }

    fn variant_metrics(
        &self,
        from: i64,
        until: i64,
    ) -> Result<(VariantMetrics, VariantMetrics), LifecycleError> {
        let totals = self
            .store
            .totals(Some(&self.config.experiment), from, until)?;
        let find = |name: &str| {
            totals
                .iter()
                .find(|t| t.variant == name)
                .map(|t| t.metrics.clone())
                .unwrap_or_default()
        };
        Ok((
            find(&self.config.production_variant),
            find(&self.config.candidate_variant),
        ))
    }

    /// A model other than the rollout's candidate that the candidate variant's stored buckets
    /// in `[from, until)` name, if any.
    fn candidate_served_elsewhere(
        &self,
        state: &RolloutState,
        from: i64,
        until: i64,
    ) -> Result<Option<String>, LifecycleError> {
        Ok(self
            .store
            .windows(
                &self.config.experiment,
                &self.config.candidate_variant,
                from,
                until,
            )?
            .into_iter()
            .filter_map(|w| w.model)
            .find(|m| *m != state.reference))
    }

    fn advance_rollout(&self, state: RolloutState) -> Result<Option<RunOutcome>, LifecycleError> {
        let now = self.clock.now_unix_ms();
        // Whole minutes only: a bucket that started before the step mixes two splits.
        let minute = super::store::MINUTE_MS;
        let ceil = |t: i64| (t + minute - 1).div_euclid(minute) * minute;
        let (step_p, step_c) = self.variant_metrics(ceil(state.step_started_ms), now + 1)?;
        let (all_p, all_c) = self.variant_metrics(ceil(state.started_ms), now + 1)?;
        let mut check = rollout::check(
            &self.config.rollout,
            &state,
            now,
            &step_p,
            &step_c,
            &all_p,
            &all_c,
        );
        // Reports of the candidate variant from another model (an agent that could not load
        // the candidate keeps its old model in the slot) must not promote the candidate.
        if matches!(
            check.action,
            RolloutAction::Promote { .. } | RolloutAction::NextStep { .. }
        ) && let Some(other) =
            self.candidate_served_elsewhere(&state, ceil(state.step_started_ms), now + 1)?
        {
            check.action = RolloutAction::Hold {
                reason: format!(
                    "agents report {other} in the {} variant, not {}: the candidate is not loaded everywhere; the step starts again",
                    self.config.candidate_variant, state.reference
                ),
            };
            // The step's observations restart: its earlier numbers mix in another model.
            if let Some(s) = lock(&self.rollout)
                .as_mut()
                .filter(|s| s.run_id == state.run_id)
            {
                s.step_started_ms = now;
            }
        }
        *lock(&self.last_check) = Some(check.clone());
        let detail = serde_json::to_value(&check).unwrap_or_default();
        match check.action.clone() {
            RolloutAction::Hold { .. } => Ok(None),
            RolloutAction::SampleRatioMismatch { p_value } => {
                if !state.srm_alerted {
                    self.audit("rollout.srm", &state.reference, detail.clone());
                    self.notify(
                        NotificationKind::Other,
                        format!("sample ratio mismatch in the rollout of {}", state.reference),
                        format!(
                            "The observed split does not match the configured {}% (p = {p_value:.2e}): no decision until it does.",
                            check.percent
                        ),
                        detail,
                    );
                    if let Some(s) = lock(&self.rollout).as_mut() {
                        s.srm_alerted = true;
                    }
                }
                Ok(None)
            }
            RolloutAction::NextStep { percent } => {
                // Held through the commit: a rollback that took the rollout meanwhile wins.
                let mut guard = lock(&self.rollout);
                if guard.as_ref().map(|r| r.run_id) != Some(state.run_id) {
                    return Ok(None);
                }
                self.control.decide(|current| {
                    let control =
                        self.control_canary(current, percent, &state.reference, &state.artifact)?;
                    Ok::<_, LifecycleError>(DecisionCommit {
                        actor: "sidecar".into(),
                        reason: format!("the step at {}% passed its guardrails", check.percent),
                        kind: "rollout.step".into(),
                        subject: state.reference.clone(),
                        detail: detail.clone(),
                        aliases: Vec::new(),
                        control: Some(control),
                        run: None,
                    })
                })?;
                if let Some(s) = guard.as_mut() {
                    s.step += 1;
                    s.step_started_ms = now;
                    s.srm_alerted = false;
                }
                drop(guard);
                tracing::info!("rollout of {}: {percent}%", state.reference);
                self.notify(
                    NotificationKind::Other,
                    format!("rollout of {}: {percent}%", state.reference),
                    format!("The step at {}% passed its guardrails.", check.percent),
                    detail,
                );
                Ok(None)
            }
            RolloutAction::Promote { reason } => {
                // A veto here comes from a rollback (a reject of a run being rolled out goes
                // through one), which stops the rollout and rejects the run itself.
                let mut promoted = false;
                let committed = self
                    .notify_update(state.run_id, &state.reference, "sidecar", &reason, None)
                    .and_then(|()| {
                        self.commit_unless_vetoed(state.run_id, || {
                            // The state is cleared only once the promotion committed; a
                            // rollback that took the rollout meanwhile wins.
                            let mut guard = lock(&self.rollout);
                            if guard.as_ref().map(|r| r.run_id) != Some(state.run_id) {
                                return Ok(());
                            }
                            self.finish_rollout_step(state.run_id, "succeeded", &detail);
                            self.commit_promotion(
                                state.run_id,
                                state.version,
                                "sidecar",
                                &reason,
                                None,
                            )?;
                            *guard = None;
                            promoted = true;
                            Ok(())
                        })
                    });
                match committed {
                    Ok(()) if promoted => {}
                    Ok(()) | Err(LifecycleError::Vetoed { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                }
                Ok(Some(RunOutcome {
                    run_id: state.run_id,
                    state: "succeeded".into(),
                    candidate: Some(state.version),
                    evaluation: None,
                    reason,
                }))
            }
            RolloutAction::Rollback { reason } | RolloutAction::Inconclusive { reason } => {
                let inconclusive = matches!(check.action, RolloutAction::Inconclusive { .. });
                let mut guard = lock(&self.rollout);
                if guard.as_ref().map(|r| r.run_id) != Some(state.run_id) {
                    return Ok(None);
                }
                let production = self
                    .store
                    .alias(&self.config.model, "production")?
                    .ok_or_else(|| LifecycleError::Refused("no production model".into()))?;
                let run_state = if inconclusive {
                    "cancelled"
                } else {
                    "rejected"
                };
                let kind = if inconclusive {
                    "rollout.inconclusive"
                } else {
                    "rollout.rollback"
                };
                self.control.decide(|current| {
                    let control = self.control_production_only(
                        current,
                        &production.reference,
                        &production.artifact,
                    )?;
                    Ok::<_, LifecycleError>(DecisionCommit {
                        actor: "sidecar".into(),
                        reason: reason.clone(),
                        kind: kind.into(),
                        subject: state.reference.clone(),
                        detail: detail.clone(),
                        aliases: Vec::new(),
                        control: Some(control),
                        run: Some((
                            state.run_id,
                            run_state.into(),
                            serde_json::json!({"reason": reason, "check": detail}),
                        )),
                    })
                })?;
                *guard = None;
                drop(guard);
                self.finish_rollout_step(state.run_id, "failed", &detail);
                tracing::warn!("rollout of {} ended: {reason}", state.reference);
                self.notify(
                    if inconclusive {
                        NotificationKind::RunFinished
                    } else {
                        NotificationKind::Rollback
                    },
                    format!(
                        "rollout of {} stopped; {} stays",
                        state.reference, production.reference
                    ),
                    format!("{reason}\n{} serves all traffic.", production.reference),
                    detail,
                );
                Ok(Some(RunOutcome {
                    run_id: state.run_id,
                    state: run_state.into(),
                    candidate: Some(state.version),
                    evaluation: None,
                    reason,
                }))
            }
        }
    }

    fn finish_rollout_step(&self, run_id: i64, state: &str, detail: &serde_json::Value) {
        if let Ok(Some(run)) = self.store.run(run_id)
            && let Some(step) = run
                .steps
                .iter()
                .find(|s| s.name == "rollout" && s.state == "running")
        {
            let _ = self.store.finish_step(step.id, state, detail.clone());
        }
    }

    /// [`LifecycleError::UnknownRun`] unless a run has this id: checked before anything that
    /// could answer busy, so that a mistyped id gets the same answer whatever the state.
    fn known_run(&self, run_id: i64) -> Result<(), LifecycleError> {
        match self.store.run(run_id)? {
            Some(_) => Ok(()),
            None => Err(LifecycleError::UnknownRun(run_id)),
        }
    }

    fn pending_run(&self, run_id: i64) -> Result<(RunRecord, u32), LifecycleError> {
        let run = self
            .store
            .run(run_id)?
            .ok_or(LifecycleError::UnknownRun(run_id))?;
        if run.state != "pending_review" {
            return Err(LifecycleError::Refused(format!(
                "run {run_id} is {}, not pending_review",
                run.state
            )));
        }
        let version = run
            .outcome
            .as_ref()
            .and_then(|o| o.get("candidate"))
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                LifecycleError::Refused(format!("run {run_id} names no candidate version"))
            })?;
        Ok((run, version))
    }

    /// Refuses to act on a run's evaluation when production changed after it: the candidate
    /// was compared with a model that no longer serves (another run promoted, or a rollback).
    /// Runs recorded before the production version was kept pass.
    fn check_production_unchanged(&self, run: &RunRecord) -> Result<(), LifecycleError> {
        let Some(evaluated) = run.outcome.as_ref().and_then(|o| o.get("production")) else {
            return Ok(());
        };
        let evaluated = evaluated.as_u64();
        let now = self
            .store
            .alias(&self.config.model, "production")?
            .map(|p| u64::from(p.version));
        if evaluated == now {
            return Ok(());
        }
        let name = |v: Option<u64>| {
            v.map_or("no production model".to_owned(), |v| {
                format!("{}@{v}", self.config.model)
            })
        };
        Err(LifecycleError::Refused(format!(
            "run {} was evaluated against {}, but production is now {}: its evaluation no longer applies; reject it and retrain (`modelgate retrain`)",
            run.id,
            name(evaluated),
            name(now)
        )))
    }

    /// Approves a run waiting for review: the candidate is promoted.
    ///
    /// # Errors
    /// [`LifecycleError::UnknownRun`] for an id no run has; [`LifecycleError::Refused`] for
    /// a run not pending review, one evaluated against a production model that has since been
    /// replaced, or an empty reason.
    pub fn approve(&self, run_id: i64, actor: &str, reason: &str) -> Result<(), LifecycleError> {
        if reason.trim().is_empty() {
            return Err(LifecycleError::Refused("a reason is required".into()));
        }
        self.known_run(run_id)?;
        let Ok(_guard) = self.running.try_lock() else {
            return Err(LifecycleError::Busy);
        };
        if lock(&self.rollout).is_some() {
            return Err(LifecycleError::Refused(
                "a rollout is in progress: roll it back or let it finish first".into(),
            ));
        }
        let (run, version) = self.pending_run(run_id)?;
        self.check_production_unchanged(&run)?;
        self.store.add_step(
            run_id,
            "approved",
            serde_json::json!({"actor": actor, "reason": reason}),
        )?;
        self.audit_as(
            actor,
            "run.approve",
            &format!("{}@{version}", self.config.model),
            serde_json::json!({"run_id": run_id, "actor": actor, "reason": reason}),
        );
        let evaluation: Option<EvaluationReport> = run
            .outcome
            .as_ref()
            .and_then(|o| o.get("evaluation"))
            .and_then(|e| serde_json::from_value(e.clone()).ok());
        match self.promote(
            run_id,
            version,
            actor,
            &format!("approved by {actor}: {reason}"),
            evaluation.as_ref(),
        ) {
            Err(LifecycleError::Vetoed {
                run_id,
                actor: by,
                reason: why,
            }) => {
                self.record_veto(run_id, &by, &why)?;
                Err(LifecycleError::Vetoed {
                    run_id,
                    actor: by,
                    reason: why,
                })
            }
            other => other,
        }
    }

    /// Rejects a run waiting for review, or stops the update of a run waiting out its grace
    /// period (that run's pipeline then records it as rejected, production unchanged).
    ///
    /// # Errors
    /// As [`Lifecycle::approve`].
    pub fn reject(&self, run_id: i64, actor: &str, reason: &str) -> Result<(), LifecycleError> {
        if reason.trim().is_empty() {
            return Err(LifecycleError::Refused("a reason is required".into()));
        }
        self.known_run(run_id)?;
        // A run being rolled out: rejecting it stops its rollout (an update in its grace
        // period included), production keeping all traffic.
        if lock(&self.rollout)
            .as_ref()
            .is_some_and(|r| r.run_id == run_id)
        {
            self.rollback(None, actor, reason)?;
            return Ok(());
        }
        // An update in its grace period: stop it (its pipeline records the rejection).
        if self.veto_grace(Some(run_id), actor, reason) {
            return Ok(());
        }
        let Ok(_guard) = self.running.try_lock() else {
            return Err(LifecycleError::Busy);
        };
        let (_, version) = self.pending_run(run_id)?;
        let reference = format!("{}@{version}", self.config.model);
        self.commit_rejection(run_id, &reference, actor, reason, None)?;
        self.notify(
            NotificationKind::RunFinished,
            format!("{reference} rejected by {actor}"),
            reason.into(),
            serde_json::json!({"run_id": run_id}),
        );
        Ok(())
    }

    /// Restores `to` (default: the `previous` alias) as production at once, through the
    /// control plane; without `to`, during a rollout, stops the rollout instead (production
    /// keeps all traffic). Returns the version now in production. An update waiting out its
    /// grace period is stopped first (its run is rejected), so that it cannot undo the
    /// rollback when the period ends.
    ///
    /// # Errors
    /// [`LifecycleError::Refused`] when there is no production or no version to go back to.
    pub fn rollback(
        &self,
        to: Option<u32>,
        actor: &str,
        reason: &str,
    ) -> Result<u32, LifecycleError> {
        if reason.trim().is_empty() {
            return Err(LifecycleError::Refused("a reason is required".into()));
        }
        let model = self.config.model.clone();
        let production = || {
            self.store.alias(&model, "production")?.ok_or_else(|| {
                LifecycleError::Refused(format!("{model} has no production version"))
            })
        };
        let resolve = |to: Option<u32>| -> Result<_, LifecycleError> {
            match to {
                Some(v) => self.store.model(&model, v)?.ok_or_else(|| {
                    LifecycleError::Refused(format!("{model}@{v} is not registered"))
                }),
                None => self.store.alias(&model, "previous")?.ok_or_else(|| {
                    LifecycleError::Refused(format!(
                        "{model} has no previous version to roll back to"
                    ))
                }),
            }
        };
        // Every refusal first: a refused rollback changes nothing.
        let current = production()?;
        if to.is_some() || lock(&self.rollout).is_none() {
            let target = resolve(to)?;
            if target.version == current.version {
                return Err(LifecycleError::Refused(format!(
                    "{} is already production",
                    target.reference
                )));
            }
        }
        // An update waiting out its grace period would replace what this restores: stop it
        // (before taking the rollout: its commit holds the grace period, then the rollout).
        self.veto_grace(None, actor, &format!("rollback: {reason}"));
        // Holding the rollout through the commit: the rollout's own decisions check it.
        let mut rollout_guard = lock(&self.rollout);
        let active = rollout_guard.clone();
        // Read again under the lock: an update may have committed before the veto.
        let current = production()?;
        if to.is_none()
            && let Some(state) = active
        {
            // A rollout in progress: stop it, production keeps all traffic.
            self.control.decide(|doc| {
                    let control =
                        self.control_production_only(doc, &current.reference, &current.artifact)?;
                    Ok::<_, LifecycleError>(DecisionCommit {
                        actor: actor.into(),
                        reason: reason.into(),
                        kind: "rollout.rollback".into(),
                        subject: state.reference.clone(),
                        detail: serde_json::json!({"run_id": state.run_id, "production": current.reference}),
                        aliases: Vec::new(),
                        control: Some(control),
                        run: Some((
                            state.run_id,
                            "rejected".into(),
                            serde_json::json!({"reason": reason, "rolled_back_by": actor}),
                        )),
                    })
                })?;
            *rollout_guard = None;
            drop(rollout_guard);
            self.finish_rollout_step(
                state.run_id,
                "failed",
                &serde_json::json!({"stopped_by": actor}),
            );
            self.notify(
                NotificationKind::Rollback,
                format!("rollout of {} stopped by {actor}", state.reference),
                format!("{reason}\n{} serves all traffic.", current.reference),
                serde_json::json!({"run_id": state.run_id}),
            );
            return Ok(current.version);
        }
        let target = resolve(to)?;
        if target.version == current.version {
            return Err(LifecycleError::Refused(format!(
                "{} is already production",
                target.reference
            )));
        }
        self.notify(
            NotificationKind::ModelUpdate,
            format!(
                "rollback: {} will replace {}",
                target.reference, current.reference
            ),
            format!("{reason}\nRequested by {actor}; takes effect now."),
            serde_json::json!({"from": current.reference, "to": target.reference}),
        );
        self.control.decide(|doc| {
            let control = self.control_production_only(doc, &target.reference, &target.artifact)?;
            Ok::<_, LifecycleError>(DecisionCommit {
                actor: actor.into(),
                reason: reason.into(),
                kind: "model.rollback".into(),
                subject: target.reference.clone(),
                detail: serde_json::json!({"from": current.reference, "to": target.reference}),
                aliases: vec![
                    AliasMove {
                        name: model.clone(),
                        alias: "production".into(),
                        version: target.version,
                    },
                    AliasMove {
                        name: model.clone(),
                        alias: "previous".into(),
                        version: current.version,
                    },
                ],
                control: Some(control),
                // A rollout in progress ends with this rollback.
                run: active.as_ref().map(|st| {
                    (
                        st.run_id,
                        "rejected".to_owned(),
                        serde_json::json!({"reason": reason, "rolled_back_by": actor}),
                    )
                }),
            })
        })?;
        if let Some(st) = rollout_guard.take() {
            self.finish_rollout_step(
                st.run_id,
                "failed",
                &serde_json::json!({"stopped_by": actor}),
            );
        }
        drop(rollout_guard);
        self.notify(
            NotificationKind::Rollback,
            format!("rolled back to {}", target.reference),
            format!("{reason}\nRequested by {actor}."),
            serde_json::json!({"from": current.reference, "to": target.reference}),
        );
        Ok(target.version)
    }
}

/// The key of one training attempt: unique (the run's start time separates runs of
/// different stores with the same id) and the same after a restart, so that an external
/// trainer finds the attempt's run again. Airflow accepts it as a DAG run id.
#[must_use]
pub fn training_run_key(model: &str, run_id: i64, started_ms: i64, attempt: u32) -> String {
    let mut stem = super::train::output_stem(model, run_id);
    if stem.len() > 160 {
        let cut = stem.len() - 160;
        stem.replace_range(..cut, "");
    }
    format!("modelgate-{stem}-{started_ms}-a{attempt}")
}

/// Profiles every feature of the training rows: the reference drift is measured against.
#[must_use]
pub fn reference_profile(data: &TrainingData) -> Vec<(String, FeatureProfile)> {
    let mut profiles: Vec<(String, FeatureProfile)> = data
        .features()
        .iter()
        .map(|f| (f.clone(), FeatureProfile::numeric()))
        .collect();
    for row in data.rows() {
        for (value, (_, profile)) in row.iter().zip(profiles.iter_mut()) {
            profile.update_number(*value);
        }
    }
    profiles
}

/// `data` with the agents' labelled records added, and how many were left out: those of
/// another width, with a label not of the label's kind, or with a value that is not
/// finite or over [`crate::wire::MAX_LABELLED_VALUE`] in magnitude (stored before ingest
/// refused them: one such record in the holdout made every evaluation fail).
fn with_records(
    data: &TrainingData,
    records: &[crate::agent::LabelledRecord],
) -> Result<(TrainingData, usize), String> {
    let width = data.features().len();
    let usable: Vec<&crate::agent::LabelledRecord> = records
        .iter()
        .filter(|r| r.features.len() == width)
        .filter(|r| crate::wire::labelled_values_usable(&r.features, r.label))
        .filter(|r| match data.label().kind {
            crate::artifact::LabelKind::Binary => r.label == 0.0 || r.label == 1.0,
            crate::artifact::LabelKind::Continuous => true,
        })
        .collect();
    let unusable = records.len() - usable.len();
    if usable.is_empty() {
        return Ok((data.clone(), unusable));
    }
    let mut rows: Vec<Vec<f64>> = data.rows().map(<[f64]>::to_vec).collect();
    let mut labels = data.labels().to_vec();
    let mut timestamps = data.timestamps().to_vec();
    for r in usable {
        rows.push(r.features.clone());
        labels.push(r.label);
        timestamps.push(r.at_ms);
    }
    let data = TrainingData::new(
        data.features().to_vec(),
        data.label().clone(),
        rows,
        labels,
        timestamps,
    )
    .map_err(|e| e.to_string())?;
    Ok((data, unusable))
}

/// A copy of `data` keeping row `i` with timestamp `keep(i, t)` when it is `Some`.
fn rebuild(
    data: &TrainingData,
    keep: impl Fn(usize, i64) -> Option<i64>,
) -> Result<TrainingData, String> {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut timestamps = Vec::new();
    for (i, ((row, label), t)) in data
        .rows()
        .zip(data.labels())
        .zip(data.timestamps())
        .enumerate()
    {
        if let Some(t) = keep(i, *t) {
            rows.push(row.to_vec());
            labels.push(*label);
            timestamps.push(t);
        }
    }
    TrainingData::new(
        data.features().to_vec(),
        data.label().clone(),
        rows,
        labels,
        timestamps,
    )
    .map_err(|e| e.to_string())
}

/// Resolves a path relative to the config file's directory.
#[must_use]
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}
