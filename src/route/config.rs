//! The experiments config as written in TOML (or built in code), before validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole experiments file: `[[experiments]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// The experiments, in file order.
    #[serde(default)]
    pub experiments: Vec<ExperimentConfig>,
}

/// One experiment: which keys enter it and how they are split between variants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Unique name of the experiment.
    pub name: String,
    /// Hash seed; defaults to `name`. Changing it reshuffles every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// `"xxh3"` (default), `"growthbook"` or `"unleash"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Fraction of keys that enter the experiment, in `[0, 1]`; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// Optional mutual-exclusion range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<NamespaceConfig>,
    /// `"ab"` (default), `"immediate"`, `"canary"` or `"gradual"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// `canary`: the candidate's fixed percent of exposed traffic, in `[0, 100]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// `canary` and `gradual`: the candidate variant's name; default the second variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// `immediate`: the variant that receives all traffic (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `gradual`: the candidate's percent from each time on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<RampStepConfig>,
    /// The variants (arms).
    #[serde(default)]
    pub variants: Vec<VariantConfig>,
    /// Forced assignments (key → variant name), for QA keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
}

/// A namespace range: experiments whose ranges in one namespace do not overlap never share a
/// key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Namespace name; experiments in the same namespace are mutually exclusive.
    pub name: String,
    /// Start of the range, in `[0, 1]`.
    pub start: f64,
    /// End of the range (exclusive), in `[start, 1]`.
    pub end: f64,
}

/// One variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// Name, unique within the experiment.
    pub name: String,
    /// `ab` only: relative weight, finite and at least 0. When no variant has a weight, all are
    /// equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Optional model reference, for example `"ranker@4"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// One step of a gradual ramp: from `at` on, the candidate gets `percent` of exposed traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampStepConfig {
    /// RFC 3339 time, for example `"2026-12-01T09:00:00Z"` (a TOML date-time works too).
    pub at: TimeText,
    /// Candidate percent, in `[0, 100]`.
    pub percent: f64,
}

/// A time as it appears in a config: a quoted RFC 3339 string or a TOML date-time literal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeText {
    /// A quoted string.
    Text(String),
    /// A TOML date-time literal.
    Toml(toml::value::Datetime),
}

impl Default for TimeText {
    fn default() -> Self {
        TimeText::Text(String::new())
    }
}

impl TimeText {
    /// The time as RFC 3339 text.
    #[must_use]
    pub fn to_text(&self) -> String {
        match self {
            TimeText::Text(s) => s.clone(),
            TimeText::Toml(d) => d.to_string(),
        }
    }
}

impl RouterConfig {
    /// Parses a TOML experiments file. Syntax errors name the line and column; validation is
    /// done when a [`crate::route::Router`] is built or stores the config.
    ///
    /// # Errors
    /// [`super::ConfigError::Parse`] when the text is not valid TOML for this schema.
    pub fn from_toml(text: &str) -> Result<Self, super::ConfigError> {
        toml::from_str(text).map_err(|e| {
            let experiment = e
                .span()
                .and_then(|span| experiment_around(text, span.start));
            super::ConfigError::Parse {
                message: match experiment {
                    Some(name) => format!("in experiment `{name}`: {e}"),
                    None => e.to_string(),
                },
            }
        })
    }
}

/// The name of the `[[experiments]]` table that holds byte `offset` of `text`, when the text
/// is valid TOML, the table is written with a `[[experiments]]` header and has a name: lets a
/// schema error (a misspelt field, a value of the wrong type) name its experiment.
fn experiment_around(text: &str, offset: usize) -> Option<String> {
    // Up to the end of the error's line: an error may point at its table's own header.
    let end = text
        .get(offset..)?
        .find('\n')
        .map_or(text.len(), |i| offset + i);
    let before = text.get(..end)?;
    let index = before
        .lines()
        .filter(|line| {
            // `[[ experiments ]]` is the same header.
            let compact: String = line.split_whitespace().collect();
            compact.starts_with("[[experiments]]")
        })
        .count()
        .checked_sub(1)?;
    let table: toml::Table = toml::from_str(text).ok()?;
    let experiment = table.get("experiments")?.as_array()?.get(index)?;
    Some(experiment.get("name")?.as_str()?.to_owned())
}
