//! # modelgate
//!
//! Split traffic between model versions safely, watch each version's quality and its input
//! distribution, and retrain, evaluate and promote models: from one crate embedded in a Rust
//! serving process, plus a sidecar.
//!
//! ## Architecture
//!
//! ```text
//!  serving process                                sidecar (`modelgate serve`)
//!  request ─► route::Router::route(key)  ─────►   ingest, drift, lifecycle
//!             (compiled config, one swap)  reports
//! ```
//!
//! Modules, each with one job:
//!
//! * [`hash`]: stable hashes for assignment (native xxh3, GrowthBook- and Unleash-compatible).
//! * [`route`]: experiment configs, strategies, namespaces, compiled tables and the
//!   [`route::Router`].
//! * [`model`]: hot-swappable model slots ([`model::ModelSlot`]) and the
//!   [`model::ModelLoader`] trait.
//! * [`artifact`]: the language-neutral JSON model artifact (logistic and linear regression)
//!   with its validation, prediction and [`artifact::ArtifactLoader`].
//! * [`metrics`]: per-variant counters, latency histogram and outcome moments, sharded per
//!   thread and merged on read.
//! * [`agent`]: the embedding facade ([`agent::Agent`]) that ties them together.
//! * [`sketch`]: mergeable KLL quantile sketches and categorical and feature profiles.
//! * [`drift`]: drift statistics on sketches (KS with error bound, PSI, chi-square,
//!   Jensen-Shannon, Wasserstein) and verdicts.
//! * [`stats`]: A/B statistics and the winner policy.
//! * [`wire`]: versioned report and control types, JSON and binary, validated on decode.
//! * `sidecar` (feature `sidecar`): the `modelgate serve` service: store, admin API,
//!   lifecycle, and a dashboard at `/` that reads the admin API (`sidecar::dashboard`).
//!
//! ## Getting started
//!
//! ```
//! use modelgate::route::Router;
//!
//! let router = Router::from_toml(r#"
//!     [[experiments]]
//!     name = "ranker"
//!     strategy = "canary"
//!     percent = 5
//!     [[experiments.variants]]
//!     name = "production"
//!     model = "ranker@3"
//!     [[experiments.variants]]
//!     name = "candidate"
//!     model = "ranker@4"
//! "#)?;
//! let ranker = router.experiment("ranker").expect("configured above");
//! // Resolve names once; on each request, route by key: no allocation, no lock.
//! let assignment = router.route(ranker, "user-1234");
//! assert!(assignment.variant.is_some());
//! # Ok::<(), modelgate::route::ConfigError>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod agent;
pub mod artifact;
pub mod drift;
pub mod hash;
pub mod metrics;
pub mod model;
#[cfg(feature = "reporter")]
pub mod reporter;
pub mod route;
#[cfg(feature = "sidecar")]
pub mod sidecar;
pub mod sketch;
pub mod stats;
pub mod wire;
