//! Drift between two CSV files: stream each through per-column profiles (sketches, or exact
//! samples with `exact`), then compare column by column.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::csv::CsvReader;
use super::distribution::{Distribution1d, ExactSample};
use super::profiles::OTHER;
use super::{
    Comparison, FeatureDrift, Thresholds, assess, compare_categorical,
    compare_categorical_profiles, compare_numeric,
};
use crate::metrics::Moments;
use crate::sketch::{CategoricalProfile, KllSketch};
use crate::stats::Sample;
use crate::stats::fixed::two_proportion_z_test;

/// Whether a column is compared as numbers or as categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Numbers: KS, PSI, Wasserstein.
    Numeric,
    /// Categories: chi-square, PSI, Jensen-Shannon.
    Categorical,
}

/// Text that marks a missing number: the markers pandas' `read_csv` treats as missing by
/// default that Rust's float parser does not already read as NaN (`NaN`, `nan`, `-nan` parse
/// as NaN). R writes `NA`; spreadsheets write `#N/A`. In a column read as numbers these count
/// as missing values and do not make the column categorical; in a categorical column they are
/// categories like any other text, so a change in how often they occur counts as drift.
/// Fields are compared after trimming spaces (` NA ` is missing; pandas would read it as
/// text), as numbers are parsed after trimming.
pub const MISSING_TOKENS: &[&str] = &[
    "NA", "N/A", "n/a", "NULL", "null", "None", "<NA>", "#N/A", "#N/A N/A", "#NA", "-1.#IND",
    "-1.#QNAN", "1.#IND", "1.#QNAN",
];

/// How to read the tables.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// Compare only these columns (default: every column of the reference).
    pub columns: Option<Vec<String>>,
    /// Columns forced to be numeric (a value that is not a number is then an error).
    pub numeric: Vec<String>,
    /// Columns forced to be categorical.
    pub categorical: Vec<String>,
    /// Keep every value and compute exact statistics: numbers are all kept and categories
    /// counted exactly, however many distinct values there are (memory grows with the file).
    pub exact: bool,
    /// Sketch accuracy parameter (default: the sketch's default).
    pub k: Option<u16>,
}

/// A bad table, naming the file, the line and the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TableError {
    /// The file.
    pub file: String,
    /// The line, when the problem has one.
    pub line: Option<u64>,
    /// What is wrong (with the column's name when it concerns one).
    pub reason: String,
}

/// One column's profile.
#[derive(Debug)]
pub struct ColumnProfile {
    /// Column name.
    pub name: String,
    forced: Option<ColumnKind>,
    all_numeric: bool,
    /// Empty fields: missing whichever way the column is read.
    empty: u64,
    /// NaN and the [`MISSING_TOKENS`]: missing when the column is read as numbers.
    missing_numbers: u64,
    sketch: KllSketch,
    exact: Option<Vec<f64>>,
    moments: Moments,
    categories: CategoricalProfile,
    exact_categories: Option<std::collections::HashMap<String, u64>>,
}

impl ColumnProfile {
    fn new(name: &str, forced: Option<ColumnKind>, options: &TableOptions) -> Result<Self, String> {
        let sketch = match options.k {
            Some(k) => KllSketch::new(k).map_err(|e| e.to_string())?,
            None => KllSketch::default(),
        };
        Ok(ColumnProfile {
            name: name.to_owned(),
            forced,
            all_numeric: true,
            empty: 0,
            missing_numbers: 0,
            sketch,
            exact: options.exact.then(Vec::new),
            moments: Moments::default(),
            categories: CategoricalProfile::default(),
            exact_categories: options.exact.then(Default::default),
        })
    }

    fn update(&mut self, value: &str) -> Result<(), String> {
        let value = value.trim();
        if value.is_empty() {
            self.empty += 1;
            return Ok(());
        }
        if self.forced != Some(ColumnKind::Categorical) {
            match value.parse::<f64>() {
                Ok(x) if x.is_nan() => self.missing_numbers += 1,
                Ok(x) => {
                    self.sketch.update(x);
                    if let Some(exact) = &mut self.exact {
                        exact.push(x);
                    }
                    if x.is_finite() {
                        self.moments.push(x);
                    }
                }
                Err(_) if MISSING_TOKENS.contains(&value) => self.missing_numbers += 1,
                Err(_) if self.forced == Some(ColumnKind::Numeric) => {
                    return Err(format!(
                        "column `{}`: `{value}` is not a number (nor a missing-value marker such as `NA`)",
                        self.name
                    ));
                }
                Err(_) => self.all_numeric = false,
            }
        }
        if self.forced != Some(ColumnKind::Numeric) {
            match &mut self.exact_categories {
                Some(counts) => match counts.get_mut(value) {
                    Some(count) => *count += 1,
                    None => {
                        counts.insert(value.to_owned(), 1);
                    }
                },
                None => self.categories.update(value),
            }
        }
        Ok(())
    }

    /// The kind the column was read as: forced, else numeric when every value is a number or
    /// missing (empty, NaN or one of the [`MISSING_TOKENS`]).
    #[must_use]
    pub fn kind(&self) -> ColumnKind {
        self.forced.unwrap_or(if self.all_numeric {
            ColumnKind::Numeric
        } else {
            ColumnKind::Categorical
        })
    }

    /// Values missing for a comparison of this `kind`: empty fields, and for numbers also NaN
    /// and the [`MISSING_TOKENS`] (a categorical comparison counts those as categories).
    #[must_use]
    pub fn missing(&self, kind: ColumnKind) -> u64 {
        match kind {
            ColumnKind::Numeric => self.empty + self.missing_numbers,
            ColumnKind::Categorical => self.empty,
        }
    }

    /// Values counted for a comparison of this `kind` (missing ones excluded).
    #[must_use]
    pub fn values(&self, kind: ColumnKind) -> u64 {
        match kind {
            ColumnKind::Numeric => self
                .exact
                .as_ref()
                .map_or(self.sketch.count(), |v| v.len() as u64),
            ColumnKind::Categorical => self
                .exact_categories
                .as_ref()
                .map_or(self.categories.count(), |m| m.values().sum()),
        }
    }
}

/// The profiles of a table's columns.
#[derive(Debug)]
pub struct TableProfile {
    /// The file it was read from.
    pub file: String,
    /// Data rows.
    pub rows: u64,
    /// Columns, in file order (only the selected ones).
    pub columns: Vec<ColumnProfile>,
}

/// Streams a CSV file (header row first) into column profiles.
///
/// # Errors
/// [`TableError`] for an unreadable or empty file, a column name twice in the header, a
/// ragged row, a selected or forced column missing from the header, a column forced both
/// numeric and categorical, or a non-number in a forced numeric column. A UTF-8 byte order
/// mark at the start of the file is skipped.
pub fn profile_file(path: &Path, options: &TableOptions) -> Result<TableProfile, TableError> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| TableError {
        file: file.clone(),
        line: None,
        reason: format!("cannot open: {e}"),
    })?;
    profile_reader(std::io::BufReader::new(f), &file, options)
}

/// Like [`profile_file`], over any reader.
///
/// # Errors
/// As [`profile_file`].
pub fn profile_reader<R: BufRead>(
    input: R,
    file: &str,
    options: &TableOptions,
) -> Result<TableProfile, TableError> {
    let err = |line: Option<u64>, reason: String| TableError {
        file: file.to_owned(),
        line,
        reason,
    };
    let mut reader = CsvReader::new(input);
    let mut fields = Vec::new();
    if !reader
        .read_record(&mut fields)
        .map_err(|e| err(Some(e.line), e.reason))?
    {
        return Err(err(
            None,
            "the file is empty: a header row is required".into(),
        ));
    }
    let header = fields.clone();
    // Columns are matched by name between the files: a name twice would compare the wrong ones.
    for (i, name) in header.iter().enumerate() {
        if header[..i].contains(name) {
            return Err(err(
                Some(1),
                format!("column `{name}` appears more than once in the header"),
            ));
        }
    }
    for name in &options.numeric {
        if options.categorical.contains(name) {
            return Err(err(
                None,
                format!("column `{name}` is forced both numeric and categorical"),
            ));
        }
    }
    for (names, kind) in [
        (&options.numeric, "numeric"),
        (&options.categorical, "categorical"),
    ] {
        if let Some(name) = names.iter().find(|n| !header.contains(n)) {
            return Err(err(
                Some(1),
                format!("column `{name}` (forced {kind}) is not in the header"),
            ));
        }
    }
    let wanted: Vec<usize> = match &options.columns {
        None => (0..header.len()).collect(),
        Some(columns) => columns
            .iter()
            .map(|c| {
                header
                    .iter()
                    .position(|h| h == c)
                    .ok_or_else(|| err(Some(1), format!("column `{c}` is not in the header")))
            })
            .collect::<Result<_, _>>()?,
    };
    let mut columns = Vec::with_capacity(wanted.len());
    for &i in &wanted {
        let name = &header[i];
        let forced = if options.numeric.contains(name) {
            Some(ColumnKind::Numeric)
        } else if options.categorical.contains(name) {
            Some(ColumnKind::Categorical)
        } else {
            None
        };
        columns
            .push(ColumnProfile::new(name, forced, options).map_err(|reason| err(None, reason))?);
    }
    let mut rows = 0u64;
    while reader
        .read_record(&mut fields)
        .map_err(|e| err(Some(e.line), e.reason))?
    {
        if fields.len() == 1 && fields[0].is_empty() {
            continue; // blank line
        }
        if fields.len() != header.len() {
            return Err(err(
                Some(reader.line()),
                format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        for (column, &i) in columns.iter_mut().zip(&wanted) {
            column
                .update(&fields[i])
                .map_err(|reason| err(Some(reader.line()), reason))?;
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(err(None, "the file has a header but no data rows".into()));
    }
    Ok(TableProfile {
        file: file.to_owned(),
        rows,
        columns,
    })
}

/// One column's result, as the CLI prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    /// Column name.
    pub column: String,
    /// How it was compared.
    pub kind: ColumnKind,
    /// Values in the reference file's column (missing ones excluded).
    pub n_reference: u64,
    /// Values in the current file's column.
    pub n_current: u64,
    /// Rows of the reference file whose value is missing for this comparison (see
    /// [`ColumnProfile::missing`]); they are left out of the statistics.
    pub missing_reference: u64,
    /// Rows of the current file whose value is missing.
    pub missing_current: u64,
    /// Two-sided p-value of a two-proportion z-test (pooled) that the share of missing rows
    /// is the same in both files; `None` when neither file misses a value. A change in how
    /// often a value is missing is a data problem the distribution statistics cannot see.
    pub missing_p_value: Option<f64>,
    /// The statistics and verdict; `None` when either file has no value in the column
    /// (every field empty or NaN): no statistic is computed from no data.
    #[serde(flatten)]
    pub drift: Option<FeatureDrift>,
    /// Why there are no statistics (`no values in the current file`, …), else `None`.
    pub no_data: Option<String>,
}

impl ColumnDrift {
    /// The verdict's name: [`super::Verdict::as_str`], or `no_data` when a file has no value
    /// in the column.
    #[must_use]
    pub fn verdict(&self) -> &'static str {
        self.drift
            .as_ref()
            .map_or("no_data", |d| d.verdict.as_str())
    }
}

/// Compares every column of `reference` with the same column of `current`. A column
/// without values in either file gets no statistics ([`ColumnDrift::no_data`]) and is left
/// out of the Benjamini-Hochberg adjustment.
///
/// # Errors
/// [`TableError`] when a reference column is missing from the current table.
pub fn compare(
    reference: &TableProfile,
    current: &TableProfile,
    thresholds: &Thresholds,
) -> Result<Vec<ColumnDrift>, TableError> {
    let mut features = Vec::with_capacity(reference.columns.len());
    let mut kinds = Vec::with_capacity(reference.columns.len());
    let mut pooled: Vec<String> = Vec::new();
    let mut empty: Vec<ColumnDrift> = Vec::new();
    let mut order: Vec<&str> = Vec::with_capacity(reference.columns.len());
    let mut sizes: Vec<(u64, u64)> = Vec::with_capacity(reference.columns.len());
    let mut missing = Vec::with_capacity(reference.columns.len());
    for r in &reference.columns {
        order.push(&r.name);
        let c = current
            .columns
            .iter()
            .find(|c| c.name == r.name)
            .ok_or_else(|| TableError {
                file: current.file.clone(),
                line: None,
                reason: format!("column `{}` of the reference is missing", r.name),
            })?;
        let kind = match (r.kind(), c.kind()) {
            (ColumnKind::Numeric, ColumnKind::Numeric) => ColumnKind::Numeric,
            _ => ColumnKind::Categorical,
        };
        let (n, m) = (r.values(kind), c.values(kind));
        missing.push(missing_rows(reference, r, current, c, kind));
        if n == 0 || m == 0 {
            let side = match (n, m) {
                (0, 0) => "either file",
                (0, _) => "the reference file",
                _ => "the current file",
            };
            empty.push(ColumnDrift {
                column: r.name.clone(),
                kind,
                n_reference: n,
                n_current: m,
                missing_reference: 0,
                missing_current: 0,
                missing_p_value: None,
                drift: None,
                no_data: Some(format!(
                    "no values in {side} (every field empty, NaN or a missing-value marker such as `NA`): nothing to compare"
                )),
            });
            continue;
        }
        sizes.push((n, m));
        let comparison = match kind {
            ColumnKind::Numeric => {
                let std = r.moments.variance().map(f64::sqrt);
                match (&r.exact, &c.exact) {
                    (Some(a), Some(b)) => {
                        let (a, b) = (ExactSample::new(a.clone()), ExactSample::new(b.clone()));
                        Comparison::Numeric(compare_numeric(&a, &b, std, thresholds))
                    }
                    _ => {
                        Comparison::Numeric(compare_numeric(&r.sketch, &c.sketch, std, thresholds))
                    }
                }
            }
            ColumnKind::Categorical => {
                let exact = |counts: &std::collections::HashMap<String, u64>| {
                    counts
                        .iter()
                        .map(|(k, &v)| (k.clone(), v as f64))
                        .collect::<BTreeMap<String, f64>>()
                };
                let comparison = match (&r.exact_categories, &c.exact_categories) {
                    (Some(a), Some(b)) => compare_categorical(&exact(a), &exact(b), thresholds),
                    // Past the summary's limit the counts are estimates and the rarer values
                    // are pooled in one "(other)" cell; the hint below says so.
                    _ => compare_categorical_profiles(&r.categories, &c.categories, thresholds),
                };
                if comparison.approximate {
                    pooled.push(r.name.clone());
                }
                Comparison::Categorical(comparison)
            }
        };
        kinds.push(kind);
        features.push((r.name.clone(), comparison));
    }
    let mut compared: Vec<ColumnDrift> = assess(features, thresholds)
        .into_iter()
        .zip(kinds)
        .map(|(mut drift, kind)| {
            if let Comparison::Numeric(n) = &drift.comparison
                && n.wasserstein.is_some_and(f64::is_infinite)
                && drift.hint.is_none()
            {
                drift.hint = Some(
                    "a file holds infinite values: the Wasserstein distance is infinite (null in JSON)"
                        .to_owned(),
                );
            }
            if pooled.contains(&drift.feature) && drift.hint.is_none() {
                drift.hint = Some(format!(
                    "more than {} distinct values: counts are estimated and the rarer values pooled as `{OTHER}`, so the statistics are approximate (drift is claimed only beyond the estimation error); `--exact` counts them all",
                    crate::sketch::DEFAULT_MAX_DISTINCT
                ));
            }
            (drift, kind)
        })
        .zip(sizes)
        .map(|((drift, kind), (n, m))| ColumnDrift {
            column: drift.feature.clone(),
            kind,
            n_reference: n,
            n_current: m,
            missing_reference: 0,
            missing_current: 0,
            missing_p_value: None,
            drift: Some(drift),
            no_data: None,
        })
        .collect();
    compared.append(&mut empty);
    // Back in the reference's column order.
    compared.sort_by_key(|d| order.iter().position(|name| *name == d.column));
    for (d, (name, counts)) in compared.iter_mut().zip(order.iter().zip(missing)) {
        debug_assert_eq!(d.column, *name);
        (d.missing_reference, d.missing_current, d.missing_p_value) = counts;
    }
    Ok(compared)
}

/// A column's missing rows in both files and the p-value of a test that their shares agree.
fn missing_rows(
    reference: &TableProfile,
    r: &ColumnProfile,
    current: &TableProfile,
    c: &ColumnProfile,
    kind: ColumnKind,
) -> (u64, u64, Option<f64>) {
    let (a, b) = (r.missing(kind), c.missing(kind));
    let p_value = (a + b > 0)
        .then(|| {
            let share = |n, successes| Sample::Binary { n, successes };
            two_proportion_z_test(&share(reference.rows, a), &share(current.rows, b))
                .ok()
                .map(|t| t.p_value)
        })
        .flatten();
    (a, b, p_value)
}

impl Distribution1d for KllSketch {
    fn count(&self) -> u64 {
        KllSketch::count(self)
    }
    fn cdf(&self, x: f64) -> f64 {
        KllSketch::cdf(self, x)
    }
    fn quantile(&self, q: f64) -> Option<f64> {
        KllSketch::quantile(self, q)
    }
    fn support(&self) -> Vec<f64> {
        let mut values: Vec<f64> = self.retained_values();
        values.sort_by(f64::total_cmp);
        values.dedup();
        values
    }
    fn has_infinite(&self) -> bool {
        self.min().is_some_and(f64::is_infinite) || self.max().is_some_and(f64::is_infinite)
    }
    fn rank_error(&self) -> f64 {
        if self.is_exact() {
            0.0
        } else {
            self.normalized_rank_error()
        }
    }
    fn steps(&self) -> Vec<(f64, f64)> {
        let view = self.sorted_view();
        let cumulative = view.cumulative();
        super::distribution::steps_from_sorted(
            view.values(),
            |i| cumulative[i] as f64,
            view.total_weight() as f64,
        )
    }
}
