//! Validation and compilation of an experiments config into immutable routing tables.
//!
//! Everything that can be decided once is decided here: names become ids, salts become
//! seeds, weights become ranges or reciprocal weights, times become milliseconds. The request
//! path then only hashes the key and reads these tables.

use std::collections::{BTreeMap, HashSet};

use super::config::{ExperimentConfig, RouterConfig};
use super::registry::NameRegistry;
use super::time::{Clock, parse_rfc3339_ms};
use super::{Assignment, ConfigError, ExperimentId, Reason, VariantId};
use crate::hash;

/// Which family of hash functions an experiment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// modelgate's native scheme: xxh3 with independent exposure and arm hashes.
    Xxh3,
    /// Bit-exact with GrowthBook's SDKs (hash version 2).
    GrowthBook,
    /// Bit-exact with Unleash's variant assignment and gradual rollout.
    Unleash,
}

impl HashScheme {
    /// The name used in configs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HashScheme::Xxh3 => "xxh3",
            HashScheme::GrowthBook => "growthbook",
            HashScheme::Unleash => "unleash",
        }
    }
}

/// How traffic is split between variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// Fixed weights over any number of variants.
    Ab,
    /// All traffic to one variant.
    Immediate,
    /// A fixed small percent to the candidate.
    Canary,
    /// The candidate's percent follows a schedule.
    Gradual,
}

impl StrategyKind {
    /// The name used in configs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Ab => "ab",
            StrategyKind::Immediate => "immediate",
            StrategyKind::Canary => "canary",
            StrategyKind::Gradual => "gradual",
        }
    }
}

/// One arm of the native rendezvous: a variant with a weight above zero.
#[derive(Debug, Clone, Copy)]
struct NativeArm {
    seed: u64,
    inv_weight: f64,
    index: usize,
}

/// An assignment without its experiment, packed into a `u64` and an `f64`: a struct of two
/// scalars returns in registers, where the three-field [`Assignment`] returns through memory,
/// and copying it back field by field stalled store forwarding on every call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routed {
    /// Bits 0..32: the variant id; bits 32..40: the reason; bit 40: whether there is a variant.
    code: u64,
    bucket: f64,
}

impl Routed {
    const HAS_VARIANT: u64 = 1 << 40;

    #[inline]
    pub(crate) fn new(variant: Option<VariantId>, reason: Reason, bucket: f64) -> Self {
        let variant_bits = variant.map_or(0, |v| Self::HAS_VARIANT | u64::from(v.0));
        Routed {
            code: variant_bits | (u64::from(reason as u8) << 32),
            bucket,
        }
    }

    #[inline]
    pub(crate) fn into_assignment(self, experiment: ExperimentId) -> Assignment {
        let reason = match (self.code >> 32) as u8 {
            0 => Reason::Assigned,
            1 => Reason::Override,
            2 => Reason::NotCovered,
            3 => Reason::OutsideNamespace,
            4 => Reason::EmptyKey,
            _ => Reason::UnknownExperiment,
        };
        Assignment {
            experiment,
            variant: (self.code & Self::HAS_VARIANT != 0).then_some(VariantId(self.code as u32)),
            bucket: self.bucket,
            reason,
        }
    }
}

/// A compiled variant.
#[derive(Debug, Clone)]
pub struct CompiledVariant {
    name: Box<str>,
    id: VariantId,
    model: Option<Box<str>>,
}

impl CompiledVariant {
    /// The variant's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The variant's id, stable for the router's lifetime.
    #[must_use]
    pub fn id(&self) -> VariantId {
        self.id
    }
    /// The model reference, when the config gives one.
    #[must_use]
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

#[derive(Debug, Clone)]
enum Split {
    /// Weights that do not change with time (`ab`, `immediate`, `canary`).
    Static(Weights),
    /// `gradual`: the candidate's percent from each time on (sorted by time).
    Gradual {
        baseline: usize,
        candidate: usize,
        steps: Box<[RampStep]>,
    },
}

/// Weights prepared for each scheme.
#[derive(Debug, Clone)]
enum Weights {
    /// Native: the variants with a weight above 0, with their seeds and reciprocal weights,
    /// and whether those weights are all equal (the common even split, which needs no
    /// logarithm; see [`native_choose_equal`]).
    Native { arms: Box<[NativeArm]>, equal: bool },
    /// GrowthBook: `[start, end)` ranges as `getBucketRanges` builds them.
    GrowthBook(Box<[(f64, f64)]>),
    /// Unleash: integer weights out of their sum.
    Unleash { weights: Box<[u32]>, total: u32 },
}

/// A compiled ramp step: from `at` (Unix ms), the candidate has `percent`.
#[derive(Debug, Clone, Copy)]
struct RampStep {
    at: i64,
    percent: f64,
    /// Native arms for this step with a weight above zero: the first `arm_count` entries.
    arms: [NativeArm; 2],
    arm_count: usize,
}

#[derive(Debug, Clone)]
struct CompiledNamespace {
    name: Box<str>,
    /// Native seed, or GrowthBook's `"__" + name` text.
    seed: u64,
    growthbook_seed: Box<str>,
    start: f64,
    end: f64,
}

/// One experiment, compiled.
#[derive(Debug, Clone)]
pub struct CompiledExperiment {
    name: Box<str>,
    id: ExperimentId,
    salt: Box<str>,
    scheme: HashScheme,
    strategy: StrategyKind,
    coverage: f64,
    exposure_seed: u64,
    arm_seed: u64,
    unleash_rollout: u32,
    namespace: Option<CompiledNamespace>,
    variants: Box<[CompiledVariant]>,
    split: Split,
    /// `(xxh3 of key, key, variant index)`, sorted by hash.
    overrides: Box<[(u64, Box<str>, usize)]>,
    /// `canary`: the candidate's percent as configured.
    canary_percent: Option<f64>,
}

/// A whole config, compiled: what a route call reads.
#[derive(Debug)]
pub struct CompiledConfig {
    experiments: Box<[CompiledExperiment]>,
    /// `ExperimentId` → index into `experiments`, `u32::MAX` when absent.
    by_id: Box<[u32]>,
    source: RouterConfig,
}

const ABSENT: u32 = u32::MAX;

/// Most variants one experiment may have.
pub const MAX_VARIANTS_PER_EXPERIMENT: usize = 256;

impl CompiledConfig {
    /// Validates and compiles `config`, giving names stable ids from `registry`.
    pub(crate) fn compile(
        config: RouterConfig,
        registry: &mut NameRegistry,
    ) -> Result<Self, ConfigError> {
        let mut seen = HashSet::new();
        for (i, e) in config.experiments.iter().enumerate() {
            if e.name.trim().is_empty() {
                return Err(ConfigError::field(
                    &format!("#{}", i + 1),
                    "name",
                    "must not be empty",
                ));
            }
            if !seen.insert(e.name.as_str()) {
                return Err(ConfigError::DuplicateExperiment {
                    experiment: e.name.clone(),
                });
            }
        }
        // Namespaces compare hash families: an unknown one is reported as itself first.
        for e in &config.experiments {
            hash_scheme(e)?;
        }
        check_namespaces(&config)?;
        // Names get ids only when the whole config is valid.
        let mut scratch = registry.clone();
        let mut experiments = Vec::with_capacity(config.experiments.len());
        for e in &config.experiments {
            experiments.push(compile_experiment(e, &mut scratch)?);
        }
        *registry = scratch;
        let mut by_id = vec![ABSENT; registry.experiment_count()];
        for (i, e) in experiments.iter().enumerate() {
            by_id[e.id.0 as usize] = i as u32;
        }
        Ok(CompiledConfig {
            experiments: experiments.into(),
            by_id: by_id.into(),
            source: config,
        })
    }

    /// The experiments, in config order.
    #[must_use]
    pub fn experiments(&self) -> &[CompiledExperiment] {
        &self.experiments
    }

    /// The experiment with this id, if the config has it.
    #[inline]
    #[must_use]
    pub fn experiment(&self, id: ExperimentId) -> Option<&CompiledExperiment> {
        let index = *self.by_id.get(id.0 as usize)?;
        self.experiments.get(index as usize)
    }

    /// The experiment with this name (a linear scan: not for the request path).
    #[must_use]
    pub fn experiment_by_name(&self, name: &str) -> Option<&CompiledExperiment> {
        self.experiments.iter().find(|e| &*e.name == name)
    }

    /// The config this was compiled from.
    #[must_use]
    pub fn source(&self) -> &RouterConfig {
        &self.source
    }
}

impl CompiledExperiment {
    /// The experiment's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The experiment's id, stable for the router's lifetime.
    #[must_use]
    pub fn id(&self) -> ExperimentId {
        self.id
    }
    /// The hash scheme.
    #[must_use]
    pub fn scheme(&self) -> HashScheme {
        self.scheme
    }
    /// The strategy.
    #[must_use]
    pub fn strategy(&self) -> StrategyKind {
        self.strategy
    }
    /// The salt (hash seed text).
    #[must_use]
    pub fn salt(&self) -> &str {
        &self.salt
    }
    /// The variants, in config order.
    #[must_use]
    pub fn variants(&self) -> &[CompiledVariant] {
        &self.variants
    }
    /// The variant with this id, if it belongs to this experiment.
    #[must_use]
    pub fn variant(&self, id: VariantId) -> Option<&CompiledVariant> {
        self.variants.iter().find(|v| v.id == id)
    }

    /// The candidate's current percent for `canary` and `gradual` experiments.
    #[must_use]
    pub fn candidate_percent(&self, clock: &dyn Clock) -> Option<f64> {
        match (&self.split, self.strategy) {
            (Split::Gradual { steps, .. }, _) => Some(gradual_percent(steps, clock.now_unix_ms())),
            (Split::Static(_), StrategyKind::Canary) => self.canary_percent,
            _ => None,
        }
    }

    /// Assigns `key`. Allocates nothing and takes no lock; reads `clock` only for `gradual`.
    #[inline]
    pub fn assign(&self, key: &str, clock: &dyn Clock) -> Assignment {
        self.assign_routed(key, clock).into_assignment(self.id)
    }

    /// [`CompiledExperiment::assign`] without the experiment id, packed so that it comes back
    /// from an out-of-line call in two registers.
    #[inline]
    pub(crate) fn assign_routed(&self, key: &str, clock: &dyn Clock) -> Routed {
        match self.scheme {
            HashScheme::Xxh3 => self.assign_native(key, clock),
            HashScheme::GrowthBook => self.assign_growthbook(key, clock),
            HashScheme::Unleash => self.assign_unleash(key, clock),
        }
    }

    #[inline]
    fn out(&self, variant: Option<usize>, bucket: f64, reason: Reason) -> Routed {
        Routed::new(
            variant.and_then(|i| self.variants.get(i)).map(|v| v.id),
            reason,
            bucket,
        )
    }

    /// The native scheme: small enough to inline into a route call, so that the assignment
    /// is built in registers rather than copied through memory.
    #[inline]
    fn assign_native(&self, key: &str, clock: &dyn Clock) -> Routed {
        let forced = self.forced_variant(key);
        let out = |variant, bucket, reason| self.out(variant, bucket, reason);
        let arm_hash = hash::xxh3(key.as_bytes(), self.arm_seed);
        let bucket = hash::to_unit(arm_hash);
        if let Some(i) = forced {
            return out(Some(i), bucket, Reason::Override);
        }
        if let Some(ns) = &self.namespace {
            let u = hash::unit_xxh3(key.as_bytes(), ns.seed);
            if !(ns.start <= u && u < ns.end) {
                return out(None, bucket, Reason::OutsideNamespace);
            }
        }
        if self.coverage < 1.0
            && hash::unit_xxh3(key.as_bytes(), self.exposure_seed) >= self.coverage
        {
            return out(None, bucket, Reason::NotCovered);
        }
        // One inlined copy of the full race serves static and ramped splits alike.
        let race: &[NativeArm] = match &self.split {
            Split::Static(Weights::Native { arms, equal: true }) => {
                return match native_choose_equal(arm_hash, arms) {
                    Some(i) => out(Some(i), bucket, Reason::Assigned),
                    None => out(None, bucket, Reason::NotCovered),
                };
            }
            Split::Static(Weights::Native { arms, equal: false }) => arms,
            Split::Gradual {
                baseline, steps, ..
            } => match current_step(steps, clock.now_unix_ms()) {
                Some(step) => &step.arms[..step.arm_count],
                None => return out(Some(*baseline), bucket, Reason::Assigned),
            },
            _ => &[],
        };
        let chosen = native_choose(arm_hash, race);
        match chosen {
            Some(i) => out(Some(i), bucket, Reason::Assigned),
            None => out(None, bucket, Reason::NotCovered),
        }
    }

    /// GrowthBook's scheme, out of line so that it does not weigh on the native path.
    #[inline(never)]
    fn assign_growthbook(&self, key: &str, clock: &dyn Clock) -> Routed {
        let forced = self.forced_variant(key);
        let out = |variant, bucket, reason| self.out(variant, bucket, reason);
        let n = hash::growthbook_hash_v2(&self.salt, key);
        if let Some(i) = forced {
            return out(Some(i), n, Reason::Override);
        }
        if key.is_empty() {
            return out(None, n, Reason::EmptyKey);
        }
        if let Some(ns) = &self.namespace {
            let u = hash::growthbook_hash_v1(key, &ns.growthbook_seed);
            if !(ns.start <= u && u < ns.end) {
                return out(None, n, Reason::OutsideNamespace);
            }
        }
        let chosen = match &self.split {
            Split::Static(Weights::GrowthBook(ranges)) => {
                ranges.iter().position(|&(s, e)| s <= n && n < e)
            }
            Split::Gradual {
                baseline,
                candidate,
                steps,
            } => {
                // The two variants in config order, as the equivalent GrowthBook experiment
                // lists them.
                let p = gradual_percent(steps, clock.now_unix_ms()) / 100.0;
                let mut weights = [0.0; 2];
                weights[*baseline] = 1.0 - p;
                weights[*candidate] = p;
                growthbook_ranges(&weights, self.coverage)
                    .iter()
                    .position(|&(s, e)| s <= n && n < e)
            }
            _ => None,
        };
        match chosen {
            Some(i) => out(Some(i), n, Reason::Assigned),
            None => out(None, n, Reason::NotCovered),
        }
    }

    /// Unleash's scheme, out of line so that it does not weigh on the native path.
    #[inline(never)]
    fn assign_unleash(&self, key: &str, clock: &dyn Clock) -> Routed {
        let forced = self.forced_variant(key);
        let out = |variant, bucket, reason| self.out(variant, bucket, reason);
        if let Some(i) = forced {
            return out(Some(i), 0.0, Reason::Override);
        }
        if let Some(ns) = &self.namespace {
            let u = hash::unit_xxh3(key.as_bytes(), ns.seed);
            if !(ns.start <= u && u < ns.end) {
                return out(None, 0.0, Reason::OutsideNamespace);
            }
        }
        let rollout = hash::unleash_normalized(&self.salt, key, 0, 100);
        let bucket = f64::from(rollout - 1) / 100.0;
        if rollout > self.unleash_rollout {
            return out(None, bucket, Reason::NotCovered);
        }
        let chosen = match &self.split {
            Split::Static(Weights::Unleash { weights, total }) => {
                unleash_choose(&self.salt, key, weights, *total)
            }
            Split::Gradual {
                baseline,
                candidate,
                steps,
            } => {
                // In config order, the candidate's share as a fixed weight and the baseline's
                // as the variable remainder, as Unleash's server stores such a split.
                let p = gradual_percent(steps, clock.now_unix_ms()) / 100.0;
                let mut weights = [0; 2];
                weights[*candidate] = unleash_weight(p);
                weights[*baseline] = UNLEASH_TOTAL - weights[*candidate];
                unleash_choose(&self.salt, key, &weights, UNLEASH_TOTAL)
            }
            _ => None,
        };
        match chosen {
            Some(i) => out(Some(i), bucket, Reason::Assigned),
            None => out(None, bucket, Reason::NotCovered),
        }
    }

    #[inline]
    fn forced_variant(&self, key: &str) -> Option<usize> {
        if self.overrides.is_empty() {
            return None;
        }
        let h = hash::xxh3(key.as_bytes(), hash::PURPOSE_OVERRIDE);
        let start = self.overrides.partition_point(|(oh, _, _)| *oh < h);
        self.overrides[start..]
            .iter()
            .take_while(|(oh, _, _)| *oh == h)
            .find(|(_, k, _)| &**k == key)
            .map(|(_, _, i)| *i)
    }
}

#[inline]
fn recip(w: f64) -> f64 {
    if w > 0.0 { 1.0 / w } else { 0.0 }
}

/// Weighted rendezvous: each arm scores `log2(u_v) / w_v`, where `u_v` in `(0, 1]` mixes the
/// key's arm hash with a seed derived from the variant's name, and the highest score wins.
/// Variant `v` wins with probability `w_v / Σw` (up to the `log2` interpolation, below 1e-5),
/// and a key never leaves a variant whose weight rises, nor one whose rivals shrink or go.
#[inline(always)]
fn native_choose(arm_hash: u64, arms: &[NativeArm]) -> Option<usize> {
    // Each score is at most 0; its magnitude, the arm's cost, is the float the race
    // minimises, with the cost's low 8 mantissa bits set to the complement of the arm's slot
    // (a 2^-44 relative rounding; on a tie, the higher slot wins). Positive floats order as
    // their bit patterns do, so this is the same winner as the integer minimum of
    // `pack_score`, but a float minimum is one `minpd` when the loop is vectorised, where a
    // 64-bit integer minimum has no SSE2 instruction and took a dozen.
    let packed = |slot: usize, arm: &NativeArm| {
        let score = hash::log2_unit_fast(hash::mix64(arm_hash ^ arm.seed)) * arm.inv_weight;
        pack_cost(score, slot)
    };
    let min = |a: f64, b: f64| if a < b { a } else { b };
    // Two running minima (even and odd slots) halve the chain of compare-and-moves that the
    // last arm waits on; the minimum of the two is the same winner.
    let (mut even, mut odd) = (f64::INFINITY, f64::INFINITY);
    let mut pairs = arms.chunks_exact(2);
    for (pair, chunk) in pairs.by_ref().enumerate() {
        even = min(packed(2 * pair, &chunk[0]), even);
        odd = min(packed(2 * pair + 1, &chunk[1]), odd);
    }
    if let [last] = pairs.remainder() {
        even = min(packed(arms.len() - 1, last), even);
    }
    let best = min(even, odd).to_bits();
    arms.get(((best & 0xff) ^ 0xff) as usize)
        .map(|arm| arm.index)
}

/// A score (at most 0, never NaN) and its slot (below 256) as one float at least 0: the
/// score's magnitude with its low 8 bits set to the slot's complement; the smallest wins.
/// Setting the sign bit and then flipping it takes the magnitude in the same two operations
/// as the packing itself (and maps a score of `+0.0` to `+0.0`). It orders as `pack_score`
/// for scores of 0 and of magnitude above 2^-1014, which covers every score: the smallest
/// nonzero `log2(u)` is about 1.6e-16 and a weight's inverse is at least 1. A score of `-inf`
/// (a weight below about `2^-1018`) packs to a NaN, which never wins a minimum; nor would
/// `-inf`.
#[inline(always)]
fn pack_cost(score: f64, slot: usize) -> f64 {
    const SIGN: u64 = 1 << 63;
    f64::from_bits((score.to_bits() | SIGN | 0xff) ^ (SIGN | slot as u64))
}

/// The integer form of [`pack_cost`]: a score and its slot as one integer; the smallest
/// wins. The tests' reference for the float minimum.
#[cfg(test)]
fn pack_score(score: f64, slot: usize) -> u64 {
    (score.to_bits() | 0xff) ^ slot as u64
}

/// [`native_choose`] out of line, for the rare near-tie of [`native_choose_equal`] (a
/// second inlined copy made the common, unequal-weight path slower).
#[cold]
#[inline(never)]
fn native_choose_cold(arm_hash: u64, arms: &[NativeArm]) -> Option<usize> {
    native_choose(arm_hash, arms)
}

/// [`native_choose`] for arms of one weight, without a logarithm: with a common weight the
/// best score is the largest `u`, that is the smallest `m = mix >> 12` (`u = 1 - m / 2^52`).
/// The arm with the smallest `m` is the answer unless the runner-up is within `2^15` of it.
/// Beyond that gap the two scores differ by more than the logarithm's rounding (below
/// `2^-49`) and the 8 bits the packing drops (`2^-44` of a score below 53): the score
/// rises at least `1.44` per unit of `t = m / 2^52`, and `1.44 · 2^15 / 2^52 > 2^-37`. So
/// this picks exactly the arm `native_choose` picks; inside the gap (one key in about `2^37`)
/// it asks `native_choose`.
#[inline]
fn native_choose_equal(arm_hash: u64, arms: &[NativeArm]) -> Option<usize> {
    const GAP: u64 = 1 << 15;
    let (mut best, mut second, mut best_slot) = (u64::MAX, u64::MAX, 0usize);
    for (slot, arm) in arms.iter().enumerate() {
        let m = hash::mix64(arm_hash ^ arm.seed) >> 12;
        let better = m < best;
        second = second.min(if better { best } else { m });
        best_slot = if better { slot } else { best_slot };
        best = best.min(m);
    }
    if second - best <= GAP {
        return native_choose_cold(arm_hash, arms);
    }
    arms.get(best_slot).map(|arm| arm.index)
}

/// GrowthBook's `getBucketRanges`, with the same floating-point operations in the same order.
fn growthbook_ranges(weights: &[f64], coverage: f64) -> [(f64, f64); 2] {
    let mut out = [(0.0, 0.0); 2];
    let mut cumulative = 0.0;
    for (slot, &w) in out.iter_mut().zip(weights) {
        let start = cumulative;
        cumulative += w;
        *slot = (start, start + coverage * w);
    }
    out
}

/// Unleash's variant weights always total this: its server fills the variable variants up to it.
const UNLEASH_TOTAL: u32 = 1000;

fn unleash_weight(fraction: f64) -> u32 {
    (fraction * f64::from(UNLEASH_TOTAL))
        .round()
        .clamp(0.0, f64::from(UNLEASH_TOTAL)) as u32
}

/// The integer weights an Unleash server would store for this split, in config order, always
/// totalling 1000:
/// - equal weights (or none given) are Unleash's "variable" variants: `1000 / n` each, and
///   the first `1000 % n` variants one more (334, 333, 333 for three);
/// - a canary's candidate is a fixed weight (its percent in thousandths, rounded) and the
///   baseline takes the rest;
/// - other weights are fixed weights, `weight × 1000` rounded, which must total 1000 (a team
///   cannot give Unleash anything else), or the config is refused.
fn unleash_weights(
    exp: &str,
    strategy: StrategyKind,
    fractions: &[f64],
    candidate: Option<usize>,
) -> Result<Box<[u32]>, ConfigError> {
    let n = fractions.len();
    if let (StrategyKind::Canary, Some(c)) = (strategy, candidate) {
        let mut weights = vec![0; n];
        weights[c] = unleash_weight(fractions[c]);
        weights[1 - c] = UNLEASH_TOTAL - weights[c];
        return Ok(weights.into());
    }
    if n > 0 && fractions.windows(2).all(|pair| pair[0] == pair[1]) {
        let (each, remainder) = (UNLEASH_TOTAL / n as u32, UNLEASH_TOTAL % n as u32);
        return Ok((0..n as u32)
            .map(|i| each + u32::from(i < remainder))
            .collect());
    }
    let weights: Box<[u32]> = fractions.iter().map(|&w| unleash_weight(w)).collect();
    let total: u32 = weights.iter().sum();
    if total != UNLEASH_TOTAL {
        let listed: Vec<String> = weights.iter().map(u32::to_string).collect();
        return Err(ConfigError::field(
            exp,
            "variants",
            format!(
                "Unleash weights are whole thousandths that total 1000, and these round to {} = {total}: give weights that are exact thousandths of their sum",
                listed.join(" + ")
            ),
        ));
    }
    Ok(weights)
}

/// Unleash's selection: `target = murmur3("{group}:{key}", 86028157) % total + 1`, then the
/// first variant whose cumulative weight reaches `target`.
fn unleash_choose(group: &str, key: &str, weights: &[u32], total: u32) -> Option<usize> {
    if total == 0 {
        return None;
    }
    let target = hash::unleash_normalized(group, key, hash::UNLEASH_VARIANT_SEED, total);
    let mut counter = 0u32;
    for (i, &w) in weights.iter().enumerate() {
        if w == 0 {
            continue;
        }
        counter += w;
        if counter >= target {
            return Some(i);
        }
    }
    None
}

fn gradual_percent(steps: &[RampStep], now_ms: i64) -> f64 {
    current_step(steps, now_ms).map_or(0.0, |step| step.percent)
}

/// The step in force at `now_ms`, or `None` before the first step (candidate at 0%).
#[inline]
fn current_step(steps: &[RampStep], now_ms: i64) -> Option<&RampStep> {
    let passed = steps.partition_point(|step| step.at <= now_ms);
    passed.checked_sub(1).and_then(|i| steps.get(i))
}

fn variant_seed(name: &str) -> u64 {
    hash::derive_seed(name, hash::PURPOSE_VARIANT)
}

fn check_namespaces(config: &RouterConfig) -> Result<(), ConfigError> {
    let mut by_namespace: BTreeMap<&str, Vec<(f64, f64, &str)>> = BTreeMap::new();
    // GrowthBook experiments place keys in a namespace with GrowthBook's hash, the others
    // with modelgate's: the two never agree, so one namespace must use one of them.
    let mut family: BTreeMap<&str, (bool, &str)> = BTreeMap::new();
    for e in &config.experiments {
        if let Some(ns) = &e.namespace {
            let growthbook = e.hash.as_deref() == Some("growthbook");
            match family.get(ns.name.as_str()) {
                Some(&(g, other)) if g != growthbook => {
                    return Err(ConfigError::field(
                        &e.name,
                        "namespace",
                        format!(
                            "namespace `{}` is shared with `{other}`, which uses another hash family: GrowthBook experiments can only share a namespace with GrowthBook experiments",
                            ns.name
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    family.insert(ns.name.as_str(), (growthbook, e.name.as_str()));
                }
            }
        }
    }
    for e in &config.experiments {
        if let Some(ns) = &e.namespace
            && ns.start.is_finite()
            && ns.end.is_finite()
            && ns.start < ns.end
        {
            by_namespace.entry(ns.name.as_str()).or_default().push((
                ns.start,
                ns.end,
                e.name.as_str(),
            ));
        }
    }
    for (namespace, mut ranges) in by_namespace {
        ranges.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in ranges.windows(2) {
            if pair[0].1 > pair[1].0 {
                return Err(ConfigError::NamespaceOverlap {
                    namespace: namespace.to_owned(),
                    first: pair[0].2.to_owned(),
                    second: pair[1].2.to_owned(),
                });
            }
        }
    }
    Ok(())
}

fn check_unit(exp: &str, field: &str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::field(
            exp,
            field,
            format!("must be a number in [0, 1], got {value}"),
        ))
    }
}

fn check_percent(exp: &str, field: &str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::field(
            exp,
            field,
            format!("must be a percent in [0, 100], got {value}"),
        ))
    }
}

/// The experiment's hash scheme; an unknown name is an error on its `hash` field.
fn hash_scheme(e: &ExperimentConfig) -> Result<HashScheme, ConfigError> {
    match e.hash.as_deref().unwrap_or("xxh3") {
        "xxh3" => Ok(HashScheme::Xxh3),
        "growthbook" => Ok(HashScheme::GrowthBook),
        "unleash" => Ok(HashScheme::Unleash),
        other => Err(ConfigError::field(
            &e.name,
            "hash",
            format!("unknown hash `{other}`: use \"xxh3\", \"growthbook\" or \"unleash\""),
        )),
    }
}

fn compile_experiment(
    e: &ExperimentConfig,
    registry: &mut NameRegistry,
) -> Result<CompiledExperiment, ConfigError> {
    let exp = e.name.as_str();
    let scheme = hash_scheme(e)?;
    let strategy = match e.strategy.as_deref().unwrap_or("ab") {
        "ab" => StrategyKind::Ab,
        "immediate" => StrategyKind::Immediate,
        "canary" => StrategyKind::Canary,
        "gradual" => StrategyKind::Gradual,
        other => {
            return Err(ConfigError::field(
                exp,
                "strategy",
                format!(
                    "unknown strategy `{other}`: use \"ab\", \"immediate\", \"canary\" or \"gradual\""
                ),
            ));
        }
    };
    let salt = e.salt.clone().unwrap_or_else(|| e.name.clone());
    if salt.is_empty() {
        return Err(ConfigError::field(
            exp,
            "salt",
            "must not be empty (leave it out to use the name)",
        ));
    }
    let coverage = check_unit(exp, "coverage", e.coverage.unwrap_or(1.0))?;
    let namespace = match &e.namespace {
        None => None,
        Some(ns) => {
            if ns.name.is_empty() {
                return Err(ConfigError::field(
                    exp,
                    "namespace.name",
                    "must not be empty",
                ));
            }
            let start = check_unit(exp, "namespace.start", ns.start)?;
            let end = check_unit(exp, "namespace.end", ns.end)?;
            if start > end {
                return Err(ConfigError::field(
                    exp,
                    "namespace",
                    format!("start {start} is after end {end}"),
                ));
            }
            Some(CompiledNamespace {
                name: ns.name.as_str().into(),
                seed: hash::derive_seed(&ns.name, hash::PURPOSE_NAMESPACE),
                growthbook_seed: format!("__{}", ns.name).into(),
                start,
                end,
            })
        }
    };

    // Variants.
    if e.variants.is_empty() {
        return Err(ConfigError::field(
            exp,
            "variants",
            "at least one variant is required",
        ));
    }
    if e.variants.len() > MAX_VARIANTS_PER_EXPERIMENT {
        return Err(ConfigError::field(
            exp,
            "variants",
            format!(
                "at most {MAX_VARIANTS_PER_EXPERIMENT} variants per experiment, got {}",
                e.variants.len()
            ),
        ));
    }
    let mut names = HashSet::new();
    for (i, v) in e.variants.iter().enumerate() {
        if v.name.trim().is_empty() {
            return Err(ConfigError::field(
                exp,
                format!("variants[{i}].name"),
                "must not be empty or blank",
            ));
        }
        if !names.insert(v.name.as_str()) {
            return Err(ConfigError::field(
                exp,
                format!("variants[{i}].name"),
                format!("variant `{}` is listed twice", v.name),
            ));
        }
        if let Some(w) = v.weight {
            if strategy != StrategyKind::Ab {
                return Err(ConfigError::field(
                    exp,
                    format!("variants[{i}].weight"),
                    format!(
                        "weights are only used by the `ab` strategy; `{}` does not take them",
                        strategy.as_str()
                    ),
                ));
            }
            if !w.is_finite() || w < 0.0 {
                return Err(ConfigError::field(
                    exp,
                    format!("variants[{i}].weight"),
                    format!("must be a finite number >= 0, got {w}"),
                ));
            }
        }
    }
    let index_of = |field: &str, name: &str| -> Result<usize, ConfigError> {
        e.variants
            .iter()
            .position(|v| v.name == name)
            .ok_or_else(|| ConfigError::field(exp, field, format!("no variant named `{name}`")))
    };
    let reject_unused = |present: bool, field: &str, used_by: &str| -> Result<(), ConfigError> {
        if present {
            Err(ConfigError::field(
                exp,
                field,
                format!(
                    "only used by the {used_by} strategy, not `{}`",
                    strategy.as_str()
                ),
            ))
        } else {
            Ok(())
        }
    };
    if strategy != StrategyKind::Canary {
        reject_unused(e.percent.is_some(), "percent", "`canary`")?;
    }
    if !matches!(strategy, StrategyKind::Canary | StrategyKind::Gradual) {
        reject_unused(e.candidate.is_some(), "candidate", "`canary` or `gradual`")?;
    }
    if strategy != StrategyKind::Immediate {
        reject_unused(e.target.is_some(), "target", "`immediate`")?;
    }
    if strategy != StrategyKind::Gradual {
        reject_unused(!e.schedule.is_empty(), "schedule", "`gradual`")?;
    }

    // The weight of each variant, as fractions (ab: normalised for native and unleash; as given
    // for GrowthBook, whose semantics we reproduce).
    let n = e.variants.len();
    let two_arms = |e: &ExperimentConfig| -> Result<(usize, usize), ConfigError> {
        if n != 2 {
            return Err(ConfigError::field(
                exp,
                "variants",
                format!(
                    "`{}` needs exactly two variants (baseline and candidate), got {n}",
                    strategy.as_str()
                ),
            ));
        }
        let candidate = match &e.candidate {
            Some(name) => index_of("candidate", name)?,
            None => 1,
        };
        Ok((1 - candidate, candidate))
    };
    let mut gradual = None;
    let candidate = match strategy {
        StrategyKind::Canary | StrategyKind::Gradual => Some(two_arms(e)?.1),
        _ => None,
    };
    let fractions: Vec<f64> = match strategy {
        StrategyKind::Ab | StrategyKind::Immediate if n < 2 && scheme == HashScheme::GrowthBook => {
            // GrowthBook puts nobody in an experiment with fewer than two variations.
            return Err(ConfigError::field(
                exp,
                "variants",
                "GrowthBook needs at least two variants",
            ));
        }
        StrategyKind::Ab => {
            let given = e.variants.iter().filter(|v| v.weight.is_some()).count();
            if given == 0 {
                vec![1.0 / n as f64; n]
            } else if given < n {
                return Err(ConfigError::field(
                    exp,
                    "variants",
                    "give a weight to every variant or to none (none means equal weights)",
                ));
            } else {
                let w: Vec<f64> = e.variants.iter().map(|v| v.weight.unwrap_or(0.0)).collect();
                let sum: f64 = w.iter().sum();
                if !sum.is_finite() {
                    return Err(ConfigError::field(
                        exp,
                        "variants",
                        "weights must have a finite sum",
                    ));
                }
                if sum <= 0.0 {
                    return Err(ConfigError::field(
                        exp,
                        "variants",
                        "weights must not all be zero",
                    ));
                }
                if scheme == HashScheme::GrowthBook {
                    if !(0.99..=1.01).contains(&sum) {
                        return Err(ConfigError::field(
                            exp,
                            "variants",
                            format!(
                                "GrowthBook weights must sum to 1 (within 0.01), got {sum}; GrowthBook would silently use equal weights"
                            ),
                        ));
                    }
                    w
                } else {
                    w.iter().map(|x| x / sum).collect()
                }
            }
        }
        StrategyKind::Immediate => {
            let target = match &e.target {
                Some(name) => index_of("target", name)?,
                None if n == 1 => 0,
                None => {
                    return Err(ConfigError::field(
                        exp,
                        "target",
                        "name the variant that receives all traffic",
                    ));
                }
            };
            (0..n)
                .map(|i| if i == target { 1.0 } else { 0.0 })
                .collect()
        }
        StrategyKind::Canary => {
            let (baseline, candidate) = two_arms(e)?;
            let Some(p) = e.percent else {
                return Err(ConfigError::field(
                    exp,
                    "percent",
                    "`canary` needs the candidate's percent, e.g. percent = 5",
                ));
            };
            let p = check_percent(exp, "percent", p)? / 100.0;
            let mut w = vec![0.0; 2];
            w[baseline] = 1.0 - p;
            w[candidate] = p;
            w
        }
        StrategyKind::Gradual => {
            let (baseline, candidate) = two_arms(e)?;
            if e.schedule.is_empty() {
                return Err(ConfigError::field(
                    exp,
                    "schedule",
                    "`gradual` needs at least one step, e.g. [{ at = \"2026-12-01T09:00:00Z\", percent = 5 }]",
                ));
            }
            let mut steps = Vec::with_capacity(e.schedule.len());
            for (i, step) in e.schedule.iter().enumerate() {
                let at = parse_rfc3339_ms(&step.at.to_text())
                    .map_err(|m| ConfigError::field(exp, format!("schedule[{i}].at"), m))?;
                let percent = check_percent(exp, &format!("schedule[{i}].percent"), step.percent)?;
                if let Some(prev) = steps.last().map(|s: &RampStep| s.at)
                    && at <= prev
                {
                    return Err(ConfigError::field(
                        exp,
                        format!("schedule[{i}].at"),
                        "steps must be in strictly increasing time order",
                    ));
                }
                let fraction = percent / 100.0;
                let arm = |index: usize, w: f64| NativeArm {
                    seed: variant_seed(&e.variants[index].name),
                    inv_weight: recip(w),
                    index,
                };
                let both = [arm(baseline, 1.0 - fraction), arm(candidate, fraction)];
                // Arms with a zero weight never win: leave them out.
                let mut arms = both;
                let mut arm_count = 0;
                for a in both
                    .iter()
                    .filter(|a| a.inv_weight > 0.0 && a.inv_weight.is_finite())
                {
                    arms[arm_count] = *a;
                    arm_count += 1;
                }
                steps.push(RampStep {
                    at,
                    percent,
                    arms,
                    arm_count,
                });
            }
            gradual = Some(Split::Gradual {
                baseline,
                candidate,
                steps: steps.into(),
            });
            Vec::new()
        }
    };

    let split = match gradual {
        Some(g) => g,
        None => Split::Static(match scheme {
            HashScheme::Xxh3 => {
                let arms: Box<[NativeArm]> = e
                    .variants
                    .iter()
                    .zip(&fractions)
                    .enumerate()
                    .filter(|(_, (_, w))| **w >= f64::MIN_POSITIVE)
                    .map(|(index, (v, &w))| NativeArm {
                        seed: variant_seed(&v.name),
                        inv_weight: 1.0 / w,
                        index,
                    })
                    .collect();
                let equal = arms
                    .windows(2)
                    .all(|pair| pair[0].inv_weight.to_bits() == pair[1].inv_weight.to_bits());
                Weights::Native { arms, equal }
            }
            HashScheme::GrowthBook => {
                let mut cumulative = 0.0;
                let ranges = fractions
                    .iter()
                    .map(|&w| {
                        let start = cumulative;
                        cumulative += w;
                        (start, start + coverage * w)
                    })
                    .collect();
                Weights::GrowthBook(ranges)
            }
            HashScheme::Unleash => Weights::Unleash {
                weights: unleash_weights(exp, strategy, &fractions, candidate)?,
                total: UNLEASH_TOTAL,
            },
        }),
    };

    let id = registry.experiment(&e.name)?;
    let mut variants = Vec::with_capacity(n);
    for v in &e.variants {
        variants.push(CompiledVariant {
            name: v.name.as_str().into(),
            id: registry.variant(id, &v.name)?,
            model: v.model.as_deref().map(Into::into),
        });
    }
    let mut overrides = Vec::with_capacity(e.overrides.len());
    for (key, variant) in &e.overrides {
        let index = index_of(&format!("overrides.\"{key}\""), variant)?;
        overrides.push((
            hash::xxh3(key.as_bytes(), hash::PURPOSE_OVERRIDE),
            key.as_str().into(),
            index,
        ));
    }
    overrides.sort_by_key(|o| o.0);
    Ok(CompiledExperiment {
        name: e.name.as_str().into(),
        id,
        exposure_seed: hash::derive_seed(&salt, hash::PURPOSE_EXPOSURE),
        arm_seed: hash::derive_seed(&salt, hash::PURPOSE_ARM),
        salt: salt.into(),
        scheme,
        strategy,
        coverage,
        unleash_rollout: (coverage * 100.0).round() as u32,
        namespace,
        variants: variants.into(),
        split,
        overrides: overrides.into(),
        canary_percent: e.percent.filter(|_| strategy == StrategyKind::Canary),
    })
}

impl CompiledNamespace {
    #[allow(dead_code)]
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed_score(m: u64, inv_weight: f64) -> u64 {
        pack_score(hash::log2_unit_fast(m << 12) * inv_weight, 0)
    }

    /// The premise of `native_choose_equal`: a gap above `2^15` in `m` always separates
    /// the packed scores, everywhere in the range, including the ends and the table's
    /// segment and exponent boundaries.
    #[test]
    fn a_gap_in_m_separates_packed_scores() {
        const GAP: u64 = (1 << 15) + 1;
        let top = (1u64 << 52) - 1 - GAP;
        let mut probes: Vec<u64> = vec![0, 1, 2, GAP, top, top - 1];
        for e in 1..52 {
            let boundary = (1u64 << 52) - (1u64 << (52 - e));
            probes.extend([boundary.saturating_sub(GAP), boundary, boundary - 1]);
        }
        for i in 0..256u64 {
            probes.push((i << 44).min(top));
            probes.push(((i << 44) + (1 << 43)).min(top));
        }
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..200_000 {
            x = hash::mix64(x);
            probes.push((x >> 12) % top);
            probes.push((x >> 40) % top);
        }
        for inv_weight in [1.0, 2.0, 10.0, 1.0 / 0.3, 1.0 / 0.999, 1.0e6] {
            for &m in &probes {
                let m = m.min(top);
                // A smaller packed score wins: `m` must beat `m + GAP` outright.
                assert!(
                    packed_score(m, inv_weight) < packed_score(m + GAP, inv_weight),
                    "m = {m}, inv_weight = {inv_weight}"
                );
            }
        }
    }

    /// The float packing orders every pair of scores as the integer packing does, at the
    /// ends too: a score of zero, the smallest normal scores, and the largest. (Scores below
    /// 2^-1014 in magnitude, where the 8 slot bits are the whole value, never occur: the
    /// smallest nonzero `log2(u)` is about 1.6e-16 and no weight's inverse is below 1.)
    #[test]
    fn float_packing_orders_as_the_integer_packing() {
        let mut scores = vec![0.0, -f64::MIN_POSITIVE, -1.0, -52.0, -f64::MAX];
        let mut x = 0x0dd_ba11u64;
        for _ in 0..2_000 {
            x = hash::mix64(x);
            scores.push(hash::log2_unit_fast(x) * (1.0 + (x >> 40) as f64));
        }
        for (i, &a) in scores.iter().enumerate() {
            for &b in &scores[..=i] {
                for (sa, sb) in [(0, 1), (1, 0), (7, 7), (255, 0)] {
                    let by_float = pack_cost(a, sa) < pack_cost(b, sb);
                    let by_integer = pack_score(a, sa) < pack_score(b, sb);
                    assert_eq!(by_float, by_integer, "{a} (slot {sa}) vs {b} (slot {sb})");
                }
            }
        }
        // A score of -inf (a vanishing weight) packs to a NaN, which loses every minimum.
        assert!(pack_cost(f64::NEG_INFINITY, 3).is_nan());
    }

    /// The two running minima of `native_choose` pick what one minimum over every arm in
    /// slot order picks, for even and odd arm counts alike.
    #[test]
    fn paired_minima_agree_with_one_running_minimum() {
        fn one_minimum(arm_hash: u64, arms: &[NativeArm]) -> Option<usize> {
            let best = arms.iter().enumerate().fold(u64::MAX, |best, (slot, arm)| {
                let u = hash::mix64(arm_hash ^ arm.seed);
                best.min(pack_score(hash::log2_unit_fast(u) * arm.inv_weight, slot))
            });
            arms.get(((best & 0xff) ^ 0xff) as usize)
                .map(|arm| arm.index)
        }
        for n in 0..=13usize {
            let arms: Vec<NativeArm> = (0..n)
                .map(|i| NativeArm {
                    seed: hash::mix64(0x5151 + i as u64),
                    inv_weight: 1.0 / (1.0 + i as f64),
                    index: i * 5 + 1,
                })
                .collect();
            let mut h = 7 + n as u64;
            for _ in 0..50_000 {
                h = hash::mix64(h.wrapping_add(0x9e37_79b9_7f4a_7c15));
                assert_eq!(native_choose(h, &arms), one_minimum(h, &arms), "{n} arms");
            }
        }
    }

    /// The even-split shortcut picks exactly what the full computation picks.
    #[test]
    fn even_split_shortcut_agrees_with_the_full_computation() {
        for n in 1..=12usize {
            for inv_weight in [1.0, n as f64, 3.7] {
                let arms: Vec<NativeArm> = (0..n)
                    .map(|i| NativeArm {
                        seed: hash::mix64(0xabcd + i as u64),
                        inv_weight,
                        index: i * 3,
                    })
                    .collect();
                let mut h = n as u64;
                for _ in 0..100_000 {
                    h = hash::mix64(h.wrapping_add(0x9e37_79b9_7f4a_7c15));
                    assert_eq!(native_choose_equal(h, &arms), native_choose(h, &arms));
                }
            }
        }
        assert_eq!(native_choose_equal(42, &[]), None);
    }

    #[test]
    fn packed_assignments_round_trip() {
        let reasons = [
            Reason::Assigned,
            Reason::Override,
            Reason::NotCovered,
            Reason::OutsideNamespace,
            Reason::EmptyKey,
            Reason::UnknownExperiment,
        ];
        for reason in reasons {
            for variant in [None, Some(VariantId(0)), Some(VariantId(u32::MAX))] {
                let a = Routed::new(variant, reason, 0.25).into_assignment(ExperimentId(7));
                assert_eq!(
                    a,
                    Assignment {
                        experiment: ExperimentId(7),
                        variant,
                        bucket: 0.25,
                        reason
                    }
                );
            }
        }
    }
}
