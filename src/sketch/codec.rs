//! The compact binary encodings of sketches and profiles (layout in the module docs of
//! `sketch`), and their validating decoders.

use crate::metrics::Moments;

use super::categorical::{CategoricalParts, CategoricalProfile};
use super::error::SketchError;
use super::kll::{KllParts, KllSketch, MAX_LEVELS};
use super::profile::{FeatureProfile, NumericProfile};

/// The encoding version this build writes and reads.
pub const VERSION: u8 = 1;
const KLL_TAG: u8 = 0xB1;
const CATEGORICAL_TAG: u8 = 0xB2;
const FEATURE_TAG: u8 = 0xB3;
const NUMERIC_KIND: u8 = 0;
const CATEGORICAL_KIND: u8 = 1;

const KLL: &str = "KLL sketch";
const CATEGORICAL: &str = "categorical profile";
const FEATURE: &str = "feature profile";

impl KllSketch {
    /// The compact, versioned binary encoding (length [`KllSketch::size_bytes`]: about
    /// `8·retained + 30` bytes, 24 KiB at `k = 1024` after 10^6 values).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.size_bytes());
        w.header(KLL_TAG);
        write_kll(&mut w, self);
        w.0
    }

    /// Decodes [`KllSketch::to_bytes`], validating the sketch.
    ///
    /// # Errors
    ///
    /// A [`SketchError`] for truncated, corrupt or hostile bytes, or another version.
    pub fn from_bytes(bytes: &[u8]) -> Result<KllSketch, SketchError> {
        let mut r = Reader::new(bytes, KLL);
        r.header(KLL_TAG)?;
        let sketch = read_kll(&mut r)?;
        r.finish()?;
        Ok(sketch)
    }
}

impl CategoricalProfile {
    /// The compact, versioned binary encoding (entries sorted by value).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.size_bytes());
        w.header(CATEGORICAL_TAG);
        write_categorical(&mut w, self);
        w.0
    }

    /// Decodes [`CategoricalProfile::to_bytes`], validating the profile.
    ///
    /// # Errors
    ///
    /// A [`SketchError`] for truncated, corrupt or hostile bytes, or another version.
    pub fn from_bytes(bytes: &[u8]) -> Result<CategoricalProfile, SketchError> {
        let mut r = Reader::new(bytes, CATEGORICAL);
        r.header(CATEGORICAL_TAG)?;
        let profile = read_categorical(&mut r)?;
        r.finish()?;
        Ok(profile)
    }
}

impl FeatureProfile {
    /// The compact, versioned binary encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.size_bytes());
        w.header(FEATURE_TAG);
        match self {
            FeatureProfile::Numeric(p) => {
                w.byte(NUMERIC_KIND);
                write_moments(&mut w, p.moments());
                write_kll(&mut w, p.sketch());
            }
            FeatureProfile::Categorical(p) => {
                w.byte(CATEGORICAL_KIND);
                write_categorical(&mut w, p);
            }
        }
        w.0
    }

    /// Decodes [`FeatureProfile::to_bytes`], validating the profile.
    ///
    /// # Errors
    ///
    /// A [`SketchError`] for truncated, corrupt or hostile bytes, or another version.
    pub fn from_bytes(bytes: &[u8]) -> Result<FeatureProfile, SketchError> {
        let mut r = Reader::new(bytes, FEATURE);
        r.header(FEATURE_TAG)?;
        let profile = match r.byte()? {
            NUMERIC_KIND => {
                let moments = read_moments(&mut r)?;
                let sketch = read_kll(&mut r)?;
                FeatureProfile::Numeric(NumericProfile::from_parts(moments, sketch)?)
            }
            CATEGORICAL_KIND => FeatureProfile::Categorical(read_categorical(&mut r)?),
            _ => return Err(r.corrupt("unknown profile kind")),
        };
        r.finish()?;
        Ok(profile)
    }
}

pub(crate) fn kll_encoded_len(s: &KllSketch) -> usize {
    let extremes = if s.is_empty() { 0 } else { 16 };
    2 + varint_len(s.k().into())
        + varint_len(s.min_k().into())
        + varint_len(s.count())
        + varint_len(s.missing())
        + 8
        + varint_len(s.num_levels() as u64)
        + s.level_sizes().map(|n| varint_len(n.into())).sum::<usize>()
        + extremes
        + 8 * s.retained()
}

pub(crate) fn categorical_encoded_len(p: &CategoricalProfile) -> usize {
    2 + categorical_body_len(p)
}

fn categorical_body_len(p: &CategoricalProfile) -> usize {
    varint_len(p.max_distinct() as u64)
        + varint_len(p.count())
        + varint_len(p.missing())
        + varint_len(p.distinct() as u64)
        + p.sorted_counters()
            .iter()
            .map(|(v, c)| varint_len(v.len() as u64) + v.len() + varint_len(*c))
            .sum::<usize>()
}

pub(crate) fn feature_encoded_len(p: &FeatureProfile) -> usize {
    3 + match p {
        FeatureProfile::Numeric(p) => {
            varint_len(p.moments().count) + 16 + kll_encoded_len(p.sketch()) - 2
        }
        FeatureProfile::Categorical(p) => categorical_body_len(p),
    }
}

fn write_kll(w: &mut Writer, s: &KllSketch) {
    w.varint(s.k().into());
    w.varint(s.min_k().into());
    w.varint(s.count());
    w.varint(s.missing());
    w.fixed_u64(s.rng_state());
    w.varint(s.num_levels() as u64);
    for size in s.level_sizes() {
        w.varint(size.into());
    }
    if let (Some(min), Some(max)) = (s.min(), s.max()) {
        w.f64(min);
        w.f64(max);
    }
    for &item in s.retained_items() {
        w.f64(item);
    }
}

fn read_kll(r: &mut Reader<'_>) -> Result<KllSketch, SketchError> {
    let k = r.varint()?;
    let min_k = r.varint()?;
    let n = r.varint()?;
    let missing = r.varint()?;
    let rng = r.fixed_u64()?;
    let num_levels = r.varint()?;
    if num_levels == 0 || num_levels > MAX_LEVELS as u64 {
        return Err(r.corrupt("a sketch has 1 to 64 levels"));
    }
    let mut level_sizes = Vec::with_capacity(num_levels as usize);
    let mut retained = 0u64;
    for _ in 0..num_levels {
        let size = r.varint()?;
        retained = retained.saturating_add(size);
        level_sizes.push(size);
    }
    let min_max = if n > 0 {
        Some((r.f64()?, r.f64()?))
    } else {
        None
    };
    if retained > (r.remaining() / 8) as u64 {
        return Err(r.corrupt("the level sizes claim more items than the input holds"));
    }
    let mut items = Vec::with_capacity(retained as usize);
    for _ in 0..retained {
        items.push(r.f64()?);
    }
    KllSketch::from_parts(KllParts {
        k,
        min_k,
        n,
        missing,
        min_max,
        level_sizes,
        items,
        rng,
    })
}

fn write_categorical(w: &mut Writer, p: &CategoricalProfile) {
    w.varint(p.max_distinct() as u64);
    w.varint(p.count());
    w.varint(p.missing());
    let counters = p.sorted_counters();
    w.varint(counters.len() as u64);
    for (value, count) in counters {
        w.varint(value.len() as u64);
        w.0.extend_from_slice(value.as_bytes());
        w.varint(count);
    }
}

fn read_categorical(r: &mut Reader<'_>) -> Result<CategoricalProfile, SketchError> {
    let max_distinct = r.varint()?;
    let count = r.varint()?;
    let missing = r.varint()?;
    // An entry takes at least 2 bytes (an empty string's length and a count).
    let entries = r.length(2)?;
    let mut counters = Vec::with_capacity(entries);
    for _ in 0..entries {
        let len = r.length(1)?;
        let value = std::str::from_utf8(r.bytes(len)?)
            .map_err(|_| r.corrupt("a value is not UTF-8"))?
            .to_owned();
        counters.push((value, r.varint()?));
    }
    CategoricalProfile::from_parts(CategoricalParts {
        max_distinct,
        count,
        missing,
        counters,
    })
}

fn write_moments(w: &mut Writer, m: &Moments) {
    w.varint(m.count);
    w.f64(m.mean);
    w.f64(m.m2);
}

fn read_moments(r: &mut Reader<'_>) -> Result<Moments, SketchError> {
    Ok(Moments {
        count: r.varint()?,
        mean: r.f64()?,
        m2: r.f64()?,
    })
}

fn varint_len(x: u64) -> usize {
    (64 - (x | 1).leading_zeros() as usize).div_ceil(7)
}

struct Writer(Vec<u8>);

impl Writer {
    fn with_capacity(capacity: usize) -> Writer {
        Writer(Vec::with_capacity(capacity))
    }

    fn header(&mut self, tag: u8) {
        self.0.extend_from_slice(&[tag, VERSION]);
    }

    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    fn varint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.0.push((x as u8) | 0x80);
            x >>= 7;
        }
        self.0.push(x as u8);
    }

    fn fixed_u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }

    fn f64(&mut self, x: f64) {
        self.fixed_u64(x.to_bits());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { bytes, what }
    }

    fn corrupt(&self, reason: &'static str) -> SketchError {
        SketchError::Corrupt {
            what: self.what,
            reason,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn header(&mut self, tag: u8) -> Result<(), SketchError> {
        let found = self.byte()?;
        if found != tag {
            return Err(SketchError::BadMagic {
                expected: self.what,
                found,
            });
        }
        let version = self.byte()?;
        if version != VERSION {
            return Err(SketchError::UnsupportedVersion {
                what: self.what,
                found: version,
                supported: VERSION,
            });
        }
        Ok(())
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], SketchError> {
        if len > self.bytes.len() {
            return Err(SketchError::Truncated { what: self.what });
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, SketchError> {
        Ok(self.bytes(1)?[0])
    }

    fn fixed_u64(&mut self) -> Result<u64, SketchError> {
        let mut le = [0u8; 8];
        le.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(le))
    }

    fn f64(&mut self) -> Result<f64, SketchError> {
        self.fixed_u64().map(f64::from_bits)
    }

    fn varint(&mut self) -> Result<u64, SketchError> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(self.corrupt("a varint overflows 64 bits"));
            }
            x |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(self.corrupt("a varint overflows 64 bits"))
    }

    /// A count of things of at least `min_bytes` each, rejected when the rest of the input
    /// cannot hold that many.
    fn length(&mut self, min_bytes: usize) -> Result<usize, SketchError> {
        let n = self.varint()?;
        if n > (self.remaining() / min_bytes) as u64 {
            return Err(self.corrupt("a length exceeds the remaining input"));
        }
        Ok(n as usize)
    }

    fn finish(self) -> Result<(), SketchError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes after the value"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_sizes_match() {
        for x in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer::with_capacity(10);
            w.varint(x);
            assert_eq!(w.0.len(), varint_len(x), "{x}");
            let mut r = Reader::new(&w.0, "test");
            assert_eq!(r.varint().unwrap(), x);
            r.finish().unwrap();
        }
        let mut r = Reader::new(&[0xff; 11], "test");
        assert!(r.varint().is_err());
    }
}
