//! Streaming, mergeable sketches of features and predictions, for drift detection.
//!
//! ## The problem
//!
//! To tell whether a model variant's inputs or outputs drift, the sidecar compares their
//! distributions between variants and over time. The agent cannot keep the values: it keeps
//! a small summary per feature, per variant, per thread shard, updates it on the request
//! path, and the sidecar merges the shards' summaries and compares them.
//!
//! ## Concepts
//!
//! * [`KllSketch`]: a KLL quantile sketch of `f64` values. Ranks (CDF) and quantiles within
//!   [`KllSketch::normalized_rank_error`] (0.27% at the default `k = 1024`, 99%
//!   confidence), exact count, minimum and maximum, about 24 KiB, mergeable in any order.
//! * [`CategoricalProfile`]: value counts, exact up to 256 distinct values, then a
//!   Misra-Gries summary whose undercount is at most `count / 257`.
//! * [`FeatureProfile`]: one feature's profile, [`NumericProfile`] (count, missing, min,
//!   max, mean and variance, and a [`KllSketch`]) or [`CategoricalProfile`].
//!
//! Everything merges (`merge`), encodes compactly (`to_bytes`) and decodes with validation
//! (`from_bytes`): corrupt or hostile bytes are an error, never a panic or an allocation
//! larger than a small multiple of the input. The types are also serde
//! `Serialize`/`Deserialize`, with the same validation.
//!
//! ## Costs (k = 1024, after 10^6 values)
//!
//! A [`KllSketch`] retains about 3,000 items: 24 KiB of heap, a 24 KiB encoding, plus
//! 48 KiB for the sorted view once it has been queried. `update` is amortised
//! allocation-free and about twice as fast as the Rust port of DataSketches' KLL; a CDF
//! query on a built sketch is one binary search (see `benches/sketch.rs`).
//!
//! ## Encodings
//!
//! A type tag byte, a version byte ([`ENCODING_VERSION`]), then LEB128 varints for
//! integers and little-endian IEEE 754 for `f64`:
//!
//! ```text
//! KllSketch           0xB1 1  k min_k count missing rng:u64 levels size*levels
//!                             [min:f64 max:f64 when count > 0] item:f64*retained
//! CategoricalProfile  0xB2 1  max_distinct count missing entries (len utf8 count)*entries
//! FeatureProfile      0xB3 1  0 moments.count mean:f64 m2:f64 <KllSketch body>
//!                           | 1 <CategoricalProfile body>
//! ```
//!
//! KLL items are stored level 0 first, categorical entries sorted by value, so encodings
//! are canonical. Decoders check every claimed length against the remaining input before
//! allocating, then every invariant (k in range, at most 64 levels, retained weights equal
//! to the count, items within [min, max] and never NaN, sorted levels, counters within the
//! count); trailing bytes are an error. With serde, a [`KllSketch`] travels as these bytes
//! (hex inside a readable summary in JSON, whose parsers may round 17-digit floats).
//!
//! ## Getting started
//!
//! ```
//! use modelgate::sketch::{FeatureProfile, KllSketch};
//!
//! // One sketch per shard, seeded by shard, merged on read.
//! let mut shards = [KllSketch::with_seed(1024, 0)?, KllSketch::with_seed(1024, 1)?];
//! for i in 0..100_000 {
//!     shards[i % 2].update((i % 1000) as f64);
//! }
//! shards[0].update(f64::NAN); // counted as missing
//! let [mut total, other] = shards;
//! total.merge(&other);
//! assert_eq!(total.count(), 100_000);
//! assert_eq!(total.missing(), 1);
//! let median = total.quantile(0.5).expect("not empty");
//! assert!((median - 500.0).abs() < 10.0);
//! assert!((total.cdf(250.0) - 0.251).abs() <= total.normalized_rank_error());
//!
//! let bytes = total.to_bytes();
//! assert_eq!(KllSketch::from_bytes(&bytes)?, total);
//!
//! let mut country = FeatureProfile::categorical();
//! country.update_category("fr");
//! country.update_missing();
//! assert_eq!((country.count(), country.missing()), (1, 1));
//! # Ok::<(), modelgate::sketch::SketchError>(())
//! ```

#![forbid(unsafe_code)]

mod categorical;
mod codec;
mod error;
mod kll;
mod profile;
mod repr;
mod rng;
mod view;

pub use categorical::{CategoricalProfile, DEFAULT_MAX_DISTINCT, MAX_DISTINCT_LIMIT};
pub use codec::VERSION as ENCODING_VERSION;
pub use error::SketchError;
pub use kll::{DEFAULT_K, DEFAULT_SEED, KllSketch, MIN_K};
pub use profile::{FeatureProfile, MAX_MOMENT_VALUE, NumericProfile};
pub use view::SortedView;
