//! Decisions that change several tables at once, committed in one transaction so that a
//! crash never leaves one half applied (aliases moved but agents not told, or the reverse).

use super::{Store, StoreError, audit, begin, control, json_text, registry, runs};
use crate::wire::Control;

/// One alias to point at a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasMove {
    /// Model name.
    pub name: String,
    /// Alias (`production`, `previous`, `candidate`, ...).
    pub alias: String,
    /// The version it points at afterwards.
    pub version: u32,
}

/// Everything one decision changes.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionCommit {
    /// Who decided (`sidecar`, `admin`, ...).
    pub actor: String,
    /// Why, for the audit log.
    pub reason: String,
    /// The audit row's kind (`model.promote`, `model.rollback`, `run.approve`, ...).
    pub kind: String,
    /// The audit row's subject.
    pub subject: String,
    /// Evidence for the audit row.
    pub detail: serde_json::Value,
    /// Aliases to move, in order.
    pub aliases: Vec<AliasMove>,
    /// A new control document for the agents, if the decision changes what they serve.
    pub control: Option<Control>,
    /// A run to move to a state (`succeeded`, `rejected`, `pending_review`, ...), with its
    /// outcome.
    pub run: Option<(i64, String, serde_json::Value)>,
}

impl Store {
    /// Commits a decision: alias moves, the control document, the run's state and an audit
    /// row, all or nothing.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an unknown model version, bad alias, invalid control
    /// document or a run already finished; SQLite's error otherwise. Nothing is written.
    pub fn commit_decision(&self, decision: &DecisionCommit) -> Result<i64, StoreError> {
        let now = self.now_ms();
        let outcome = match &decision.run {
            Some((_, _, outcome)) => Some(json_text(outcome)?),
            None => None,
        };
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        for m in &decision.aliases {
            registry::set_alias_tx(
                &tx,
                now,
                &m.name,
                &m.alias,
                m.version,
                &decision.actor,
                &decision.reason,
            )?;
        }
        if let Some(c) = &decision.control {
            control::save_control_tx(&tx, now, c, &decision.actor)?;
        }
        if let (Some((run_id, state, _)), Some(outcome)) = (&decision.run, &outcome) {
            runs::finish_run_tx(&tx, now, *run_id, state, outcome)?;
        }
        let mut detail = decision.detail.clone();
        if let Some(object) = detail.as_object_mut() {
            object.insert("reason".into(), decision.reason.clone().into());
        }
        let id = audit::insert(
            &tx,
            now,
            &decision.actor,
            &decision.kind,
            &decision.subject,
            &detail,
        )?;
        tx.commit()?;
        Ok(id)
    }
}
