//! The sidecar (feature `sidecar`): the HTTP service agents report to, its store, and the
//! control plane that tells agents which experiments and models are current.
//!
//! * [`config`]: the TOML config file and tokens.
//! * [`control`]: the control document agents poll, and the lock its writers share.
//! * [`store`]: the SQLite store (reports, windows, registry, audit, runs).
//! * [`server`]: the axum service (`modelgate serve`).
//! * [`client`]: a blocking admin-API client for the CLI.
//! * [`prometheus`]: the `/metrics` exposition.

pub mod client;
pub mod config;
pub mod control;
pub mod prometheus;
pub mod server;
pub mod store;
