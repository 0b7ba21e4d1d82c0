//! serde representations of the sketches and profiles (JSON reports carry them), validated
//! on deserialization exactly like the binary decoders.
//!
//! A [`KllSketch`] travels as its binary encoding (hex inside a readable summary in JSON);
//! the profiles as structures around it.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::metrics::Moments;

use super::categorical::{CategoricalParts, CategoricalProfile};
use super::kll::KllSketch;
use super::profile::NumericProfile;

/// A KLL sketch in human-readable formats: readable summary fields for people, and the
/// authoritative binary encoding in hex (JSON parsers may round 17-digit floats by one
/// unit in the last place, which would break exact round trips and sorted-level checks).
#[derive(Serialize)]
struct KllOut<'a> {
    k: u16,
    count: u64,
    missing: u64,
    min: Option<Float>,
    max: Option<Float>,
    normalized_rank_error: f64,
    encoding: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KllIn {
    k: Option<u64>,
    count: Option<u64>,
    missing: Option<u64>,
    // Informational only: the encoding carries the exact values.
    #[serde(default, rename = "min")]
    _min: IgnoredAny,
    #[serde(default, rename = "max")]
    _max: IgnoredAny,
    #[serde(default, rename = "normalized_rank_error")]
    _normalized_rank_error: IgnoredAny,
    encoding: String,
}

impl Serialize for KllSketch {
    /// Binary formats: the bytes of [`KllSketch::to_bytes`]. Human-readable formats (JSON):
    /// `{"k", "count", "missing", "min", "max", "normalized_rank_error", "encoding"}` with
    /// the encoding in hex and `±inf` extremes as `"inf"`/`"-inf"`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_bytes();
        if !serializer.is_human_readable() {
            return serializer.serialize_bytes(&bytes);
        }
        KllOut {
            k: self.k(),
            count: self.count(),
            missing: self.missing(),
            min: self.min().map(Float),
            max: self.max().map(Float),
            normalized_rank_error: self.normalized_rank_error(),
            encoding: &to_hex(&bytes),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KllSketch {
    /// Decodes and validates the encoding like [`KllSketch::from_bytes`]; in human-readable
    /// formats the `k`, `count` and `missing` fields, when present, must agree with it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            let bytes = deserializer.deserialize_bytes(BytesVisitor)?;
            return KllSketch::from_bytes(&bytes).map_err(de::Error::custom);
        }
        let raw = KllIn::deserialize(deserializer)?;
        let bytes = from_hex(&raw.encoding)
            .ok_or_else(|| de::Error::custom("a KLL sketch's encoding must be hex"))?;
        let sketch = KllSketch::from_bytes(&bytes).map_err(de::Error::custom)?;
        let agrees = raw.k.is_none_or(|k| k == u64::from(sketch.k()))
            && raw.count.is_none_or(|n| n == sketch.count())
            && raw.missing.is_none_or(|m| m == sketch.missing());
        if !agrees {
            return Err(de::Error::custom(
                "a KLL sketch's k, count or missing disagrees with its encoding",
            ));
        }
        Ok(sketch)
    }
}

/// Accepts bytes in any of the ways a binary format hands them over.
struct BytesVisitor;

impl<'de> de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bytes of an encoded KLL sketch")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[derive(Serialize)]
struct CategoricalOut<'a> {
    max_distinct: usize,
    count: u64,
    missing: u64,
    counters: BTreeMap<&'a str, u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoricalIn {
    max_distinct: u64,
    count: u64,
    missing: u64,
    counters: BTreeMap<String, u64>,
}

impl Serialize for CategoricalProfile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CategoricalOut {
            max_distinct: self.max_distinct(),
            count: self.count(),
            missing: self.missing(),
            counters: self.sorted_counters().into_iter().collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CategoricalProfile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = CategoricalIn::deserialize(deserializer)?;
        CategoricalProfile::from_parts(CategoricalParts {
            max_distinct: raw.max_distinct,
            count: raw.count,
            missing: raw.missing,
            counters: raw.counters.into_iter().collect(),
        })
        .map_err(de::Error::custom)
    }
}

#[derive(Serialize)]
struct NumericOut<'a> {
    moments: &'a Moments,
    sketch: &'a KllSketch,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NumericIn {
    moments: Moments,
    sketch: KllSketch,
}

impl Serialize for NumericProfile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NumericOut {
            moments: self.moments(),
            sketch: self.sketch(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NumericProfile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = NumericIn::deserialize(deserializer)?;
        NumericProfile::from_parts(raw.moments, raw.sketch).map_err(de::Error::custom)
    }
}

/// An `f64` that survives JSON: `±inf` as strings in human-readable formats.
#[derive(Clone, Copy)]
struct Float(f64);

impl Serialize for Float {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if serializer.is_human_readable() && !x.is_finite() {
            serializer.serialize_str(if x.is_nan() {
                "NaN"
            } else if x > 0.0 {
                "inf"
            } else {
                "-inf"
            })
        } else {
            serializer.serialize_f64(x)
        }
    }
}
