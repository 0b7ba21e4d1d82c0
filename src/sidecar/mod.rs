//! The sidecar (feature `sidecar`): the HTTP service agents report to, its store, and the
//! control plane that tells agents which experiments and models are current.
//!
//! * [`config`]: the TOML config file and tokens.
//! * [`control`]: the control document agents poll, and the lock its writers share.
//! * [`dashboard`]: the web pages at `/` (overview, drift, experiments, runs, reviews,
//!   audit log), served from the binary and reading the admin API.
//! * [`demo`]: `modelgate demo`, the whole loop on real data in under a minute.
//! * [`lifecycle`]: triggers, training, evaluation, the promotion policy, review, rollback.
//! * [`store`]: the SQLite store (reports, windows, registry, audit, runs).
//! * [`server`]: the axum service (`modelgate serve`).
//! * [`client`]: a blocking admin-API client for the CLI.
//! * [`notify`]: notifications to administrators (email, webhook, log fallback).
//! * [`prometheus`]: the `/metrics` exposition.
//! * [`train`]: training data, the [`train::Trainer`] trait, the in-process linfa trainer,
//!   the external-command trainer, the Airflow trainer (a DAG run per attempt, resumed
//!   after a restart) and the one-shot training behind `modelgate train`.
//! * [`evaluate`]: holdout metrics (accuracy, AUC, log loss, F1, RMSE, MAE) and the
//!   candidate-versus-production comparison.

pub mod client;
pub mod config;
mod connections;
pub mod control;
pub mod dashboard;
pub mod demo;
pub mod evaluate;
pub mod lifecycle;
pub mod notify;
pub mod prometheus;
pub mod server;
pub mod store;
pub mod train;
