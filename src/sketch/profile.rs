//! Per-feature profiles: what the agent keeps for one feature of one variant in one shard.

use serde::{Deserialize, Serialize};

use crate::metrics::Moments;

use super::categorical::CategoricalProfile;
use super::error::SketchError;
use super::kll::KllSketch;

/// Largest magnitude of a value that a [`NumericProfile`]'s mean and variance take in: the
/// agent's bound on feature and labelled values ([`crate::wire::MAX_LABELLED_VALUE`],
/// `1e100`), at which squares and Chan merges stay finite over any count. Larger values
/// still enter the quantile sketch.
pub const MAX_MOMENT_VALUE: f64 = crate::wire::MAX_LABELLED_VALUE;

/// The profile of a numeric feature: exact count, missing count, minimum and maximum, mean
/// and variance (Welford updates, Chan merges, over the finite values), and a
/// [`KllSketch`] for quantiles and CDFs.
///
/// NaN counts as missing. `±inf`, and finite values beyond [`MAX_MOMENT_VALUE`] in magnitude,
/// enter the sketch (and so the count, minimum and maximum) but not the mean and variance,
/// which would otherwise overflow to infinity or NaN (`f64::MAX` and `-f64::MAX` have no
/// finite Welford step) and make a profile its own decoder refuses;
/// [`NumericProfile::outside_moments`] counts them.
///
/// Cost: one [`KllSketch::update`] plus one Welford step per value; memory that of the
/// sketch (about 24.5 KiB at `k = 1024` after 10^6 values) plus 24 bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NumericProfile {
    moments: Moments,
    sketch: KllSketch,
}

impl NumericProfile {
    /// An empty profile whose sketch has parameter `k` and coin-flip `seed` (see
    /// [`KllSketch::with_seed`]).
    ///
    /// # Errors
    ///
    /// [`SketchError::InvalidK`] when `k < 8`.
    pub fn with_seed(k: u16, seed: u64) -> Result<NumericProfile, SketchError> {
        Ok(NumericProfile {
            moments: Moments::default(),
            sketch: KllSketch::with_seed(k, seed)?,
        })
    }

    /// Adds one value (NaN counts as missing).
    #[inline]
    pub fn update(&mut self, x: f64) {
        if x.abs() <= MAX_MOMENT_VALUE {
            self.moments.push(x);
        }
        self.sketch.update(x);
    }

    /// Counts one missing value.
    #[inline]
    pub fn update_missing(&mut self) {
        self.sketch.update_missing();
    }

    /// Merges `other` into `self` (see [`KllSketch::merge`] and [`Moments::merge`]).
    pub fn merge(&mut self, other: &NumericProfile) {
        self.moments = self.moments.merge(&other.moments);
        self.sketch.merge(&other.sketch);
    }

    /// Number of values (NaN excluded, `±inf` included).
    #[must_use]
    pub fn count(&self) -> u64 {
        self.sketch.count()
    }

    /// Number of missing values.
    #[must_use]
    pub fn missing(&self) -> u64 {
        self.sketch.missing()
    }

    /// Number of values in the count but not in the mean and variance: infinite ones and
    /// those beyond [`MAX_MOMENT_VALUE`] in magnitude.
    #[must_use]
    pub fn outside_moments(&self) -> u64 {
        self.sketch.count().saturating_sub(self.moments.count)
    }

    /// Exact minimum, `None` when empty.
    #[must_use]
    pub fn min(&self) -> Option<f64> {
        self.sketch.min()
    }

    /// Exact maximum, `None` when empty.
    #[must_use]
    pub fn max(&self) -> Option<f64> {
        self.sketch.max()
    }

    /// Mean of the values within [`MAX_MOMENT_VALUE`], `None` when there are none.
    #[must_use]
    pub fn mean(&self) -> Option<f64> {
        (self.moments.count > 0).then_some(self.moments.mean)
    }

    /// Sample variance of the values within [`MAX_MOMENT_VALUE`], `None` with fewer than two.
    #[must_use]
    pub fn variance(&self) -> Option<f64> {
        self.moments.variance()
    }

    /// The moments of the values within [`MAX_MOMENT_VALUE`].
    #[must_use]
    pub fn moments(&self) -> &Moments {
        &self.moments
    }

    /// The quantile sketch.
    #[must_use]
    pub fn sketch(&self) -> &KllSketch {
        &self.sketch
    }

    /// Heap bytes held (those of the sketch).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.sketch.heap_bytes()
    }

    /// Rebuilds a profile from decoded parts: the moments must be valid, count no more values
    /// than the sketch, and be moments of values within [`MAX_MOMENT_VALUE`]: a mean no
    /// larger, and `m2` at most `4 · count · MAX_MOMENT_VALUE²` (the true bound is
    /// `count · MAX_MOMENT_VALUE²`; the factor leaves room for rounding). Later updates and
    /// merges of the decoded profile then stay finite.
    pub(crate) fn from_parts(
        moments: Moments,
        sketch: KllSketch,
    ) -> Result<NumericProfile, SketchError> {
        let within_range = moments.mean.abs() <= MAX_MOMENT_VALUE
            && moments.m2 <= 4.0 * moments.count as f64 * (MAX_MOMENT_VALUE * MAX_MOMENT_VALUE);
        if !moments.is_valid() || !within_range || moments.count > sketch.count() {
            return Err(SketchError::Corrupt {
                what: "numeric profile",
                reason: "the moments are not finite, are beyond the values' range, or count more values than the sketch",
            });
        }
        Ok(NumericProfile { moments, sketch })
    }
}

/// The profile of one feature: numeric or categorical.
///
/// A value of the other kind (a string for a numeric feature, a number for a categorical
/// one) counts as missing, so a mistyped request never fails the hot path.
///
/// serde: externally tagged, `{"numeric": {...}}` or `{"categorical": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureProfile {
    /// A numeric feature.
    Numeric(NumericProfile),
    /// A categorical feature.
    Categorical(CategoricalProfile),
}

impl FeatureProfile {
    /// An empty numeric profile with the default sketch ([`super::DEFAULT_K`]).
    #[must_use]
    pub fn numeric() -> FeatureProfile {
        FeatureProfile::Numeric(NumericProfile::default())
    }

    /// An empty categorical profile with the default limit
    /// ([`super::DEFAULT_MAX_DISTINCT`]).
    #[must_use]
    pub fn categorical() -> FeatureProfile {
        FeatureProfile::Categorical(CategoricalProfile::default())
    }

    /// `"numeric"` or `"categorical"`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            FeatureProfile::Numeric(_) => "numeric",
            FeatureProfile::Categorical(_) => "categorical",
        }
    }

    /// Adds a number (missing for a categorical feature).
    #[inline]
    pub fn update_number(&mut self, x: f64) {
        match self {
            FeatureProfile::Numeric(p) => p.update(x),
            FeatureProfile::Categorical(p) => p.update_missing(),
        }
    }

    /// Adds a category (missing for a numeric feature).
    #[inline]
    pub fn update_category(&mut self, value: &str) {
        match self {
            FeatureProfile::Numeric(p) => p.update_missing(),
            FeatureProfile::Categorical(p) => p.update(value),
        }
    }

    /// Counts one missing value.
    #[inline]
    pub fn update_missing(&mut self) {
        match self {
            FeatureProfile::Numeric(p) => p.update_missing(),
            FeatureProfile::Categorical(p) => p.update_missing(),
        }
    }

    /// Merges `other` into `self`.
    ///
    /// # Errors
    ///
    /// [`SketchError::KindMismatch`] when one is numeric and the other categorical; `self`
    /// is then unchanged.
    pub fn merge(&mut self, other: &FeatureProfile) -> Result<(), SketchError> {
        match (&mut *self, other) {
            (FeatureProfile::Numeric(a), FeatureProfile::Numeric(b)) => a.merge(b),
            (FeatureProfile::Categorical(a), FeatureProfile::Categorical(b)) => a.merge(b),
            _ => {
                return Err(SketchError::KindMismatch {
                    into: self.kind(),
                    from: other.kind(),
                });
            }
        }
        Ok(())
    }

    /// Number of values (missing excluded).
    #[must_use]
    pub fn count(&self) -> u64 {
        match self {
            FeatureProfile::Numeric(p) => p.count(),
            FeatureProfile::Categorical(p) => p.count(),
        }
    }

    /// Number of missing values.
    #[must_use]
    pub fn missing(&self) -> u64 {
        match self {
            FeatureProfile::Numeric(p) => p.missing(),
            FeatureProfile::Categorical(p) => p.missing(),
        }
    }

    /// The numeric profile, if this is one.
    #[must_use]
    pub fn as_numeric(&self) -> Option<&NumericProfile> {
        match self {
            FeatureProfile::Numeric(p) => Some(p),
            FeatureProfile::Categorical(_) => None,
        }
    }

    /// The categorical profile, if this is one.
    #[must_use]
    pub fn as_categorical(&self) -> Option<&CategoricalProfile> {
        match self {
            FeatureProfile::Numeric(_) => None,
            FeatureProfile::Categorical(p) => Some(p),
        }
    }

    /// Length of [`FeatureProfile::to_bytes`], computed without encoding.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        super::codec::feature_encoded_len(self)
    }

    /// Heap bytes held.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        match self {
            FeatureProfile::Numeric(p) => p.heap_bytes(),
            FeatureProfile::Categorical(p) => p.heap_bytes(),
        }
    }
}
