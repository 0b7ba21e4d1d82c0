//! Training data: numeric feature rows with labels and timestamps, sorted by time.

use std::collections::HashSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::artifact::{DataRange, LabelKind, LabelSpec};
use crate::drift::csv::{CsvError, CsvReader};

/// Which columns of a CSV file hold what, for [`TrainingData::from_csv`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSpec {
    /// The column with each row's time: integer (or decimal) Unix milliseconds, or an
    /// RFC 3339 time.
    pub timestamp_column: String,
    /// The feature columns, in the order rows will hold them.
    pub feature_columns: Vec<String>,
    /// The label column.
    pub label_column: String,
    /// Binary or continuous.
    pub label_kind: LabelKind,
    /// For a binary label: the value that means class 1 (`"UP"`, `"yes"`); every other
    /// non-missing value means 0, and at most one other value may occur. `None` accepts `1`/`0`
    /// and `true`/`false` (any case), with `1` (or `true`) as class 1.
    pub positive_label: Option<String>,
}

/// Rows [`TrainingData::from_csv`] left out, by the first problem found in each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SkippedRows {
    /// Rows whose timestamp is missing or unparsable.
    pub bad_timestamp: u64,
    /// Rows with a missing, non-numeric or non-finite feature value.
    pub bad_feature: u64,
    /// Rows whose label is missing or not a valid label of its kind.
    pub bad_label: u64,
    /// The 1-based line of the first skipped row.
    pub first_line: Option<u64>,
}

impl SkippedRows {
    /// All skipped rows.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.bad_timestamp + self.bad_feature + self.bad_label
    }
}

/// Why training data cannot be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file cannot be opened or read.
    #[error("cannot read training data {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid CSV.
    #[error("training data {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV error, with its line.
        #[source]
        source: CsvError,
    },
    /// The file has no header row.
    #[error("training data {path} is empty: a header row is required")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A column the spec names is not in the header.
    #[error("training data {path}: column `{column}` is not in the header")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// A column the spec names appears more than once in the header.
    #[error("training data {path}: column `{column}` appears more than once in the header")]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// A record's field count differs from the header's.
    #[error("training data {path}, line {line}: {found} fields where the header has {expected}")]
    Ragged {
        /// The file.
        path: PathBuf,
        /// The record's line.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the record.
        found: usize,
    },
    /// A binary label column holds more than two distinct values.
    #[error(
        "training data {path}: label column `{column}` is not binary: besides the positive value `{positive}` it holds {others:?}"
    )]
    NotBinary {
        /// The file.
        path: PathBuf,
        /// The label column.
        column: String,
        /// The positive value.
        positive: String,
        /// The other values seen (the first few).
        others: Vec<String>,
    },
    /// The spec or the rows given are unusable (no features, duplicate names, lengths that
    /// disagree, non-finite values, binary labels other than 0 and 1).
    #[error("training data: {0}")]
    Invalid(String),
}

/// Rows of numeric features in a fixed feature order, with a label and a timestamp each,
/// sorted by time (ties keep their input order).
///
/// Binary labels are stored as 1 (the positive value) and 0; continuous labels as given.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingData {
    features: Vec<String>,
    label: LabelSpec,
    /// Row-major, `len() × features.len()`.
    values: Vec<f64>,
    labels: Vec<f64>,
    timestamps: Vec<i64>,
    skipped: SkippedRows,
}

/// Values treated as a missing label.
const MISSING: [&str; 7] = ["", "na", "n/a", "nan", "null", "none", "?"];

impl TrainingData {
    /// Builds training data from rows (each in `features` order), labels and timestamps
    /// (Unix ms), and sorts it by time.
    ///
    /// # Errors
    /// [`DataError::Invalid`] when `features` is empty or has duplicates or empty names,
    /// lengths disagree, a value or label is not finite, a binary label is not 0 or 1, or a
    /// binary label spec has no positive value.
    pub fn new(
        features: Vec<String>,
        label: LabelSpec,
        rows: Vec<Vec<f64>>,
        labels: Vec<f64>,
        timestamps: Vec<i64>,
    ) -> Result<Self, DataError> {
        check_names(&features, &label)?;
        if rows.len() != labels.len() || rows.len() != timestamps.len() {
            return Err(DataError::Invalid(format!(
                "{} rows, {} labels and {} timestamps: they must agree",
                rows.len(),
                labels.len(),
                timestamps.len()
            )));
        }
        let mut values = Vec::with_capacity(rows.len() * features.len());
        for (i, row) in rows.iter().enumerate() {
            if row.len() != features.len() {
                return Err(DataError::Invalid(format!(
                    "row {i} has {} values, there are {} features",
                    row.len(),
                    features.len()
                )));
            }
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(DataError::Invalid(format!(
                    "row {i}, feature `{}` is not finite",
                    features[j]
                )));
            }
            values.extend_from_slice(row);
        }
        for (i, &y) in labels.iter().enumerate() {
            let ok = match label.kind {
                LabelKind::Binary => y == 0.0 || y == 1.0,
                LabelKind::Continuous => y.is_finite(),
            };
            if !ok {
                return Err(DataError::Invalid(format!(
                    "label of row {i} is {y}; {} labels must be {}",
                    label.kind.as_str(),
                    match label.kind {
                        LabelKind::Binary => "0 or 1",
                        LabelKind::Continuous => "finite",
                    }
                )));
            }
        }
        let mut data = TrainingData {
            features,
            label,
            values,
            labels,
            timestamps,
            skipped: SkippedRows::default(),
        };
        data.sort_by_time();
        Ok(data)
    }

    /// Reads training data from a CSV file with a header row, with the crate's streaming CSV
    /// reader ([`crate::drift::csv`]). Rows whose timestamp, a feature or the label is
    /// missing or unparsable are skipped and counted ([`skipped`](Self::skipped)); missing
    /// labels are empty fields and `NA`, `N/A`, `NaN`, `null`, `None`, `?` (any case).
    /// Blank lines are ignored. The result is sorted by time.
    ///
    /// # Errors
    /// Unreadable files, invalid CSV, ragged records, columns missing from the header or
    /// repeated in it, an unusable spec, and a binary label column with more than two values
    /// ([`DataError`]).
    pub fn from_csv(path: &Path, spec: &CsvSpec) -> Result<Self, DataError> {
        Self::from_csv_file(path, spec)
    }

    /// The column names of a CSV file's header (a leading byte-order mark removed, names
    /// trimmed).
    ///
    /// # Errors
    /// An unreadable or empty file, or invalid CSV ([`DataError`]).
    pub fn csv_header(path: &Path) -> Result<Vec<String>, DataError> {
        let file = std::fs::File::open(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut reader = CsvReader::new(BufReader::new(file));
        let mut fields = Vec::new();
        if !reader
            .read_record(&mut fields)
            .map_err(|source| DataError::Csv {
                path: path.to_owned(),
                source,
            })?
        {
            return Err(DataError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(fields
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = if i == 0 {
                    h.trim_start_matches('\u{feff}')
                } else {
                    h.as_str()
                };
                h.trim().to_owned()
            })
            .collect())
    }

    fn from_csv_file(path: &Path, spec: &CsvSpec) -> Result<Self, DataError> {
        let label = LabelSpec {
            name: spec.label_column.clone(),
            positive: match spec.label_kind {
                LabelKind::Binary => {
                    Some(spec.positive_label.clone().unwrap_or_else(|| "1".into()))
                }
                LabelKind::Continuous => None,
            },
            kind: spec.label_kind,
        };
        if spec.label_kind == LabelKind::Continuous && spec.positive_label.is_some() {
            return Err(DataError::Invalid(
                "a continuous label has no positive value".into(),
            ));
        }
        check_names(&spec.feature_columns, &label)?;

        let file = std::fs::File::open(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        let csv_err = |source| DataError::Csv {
            path: path.to_owned(),
            source,
        };
        let mut reader = CsvReader::new(BufReader::new(file));
        let mut fields = Vec::new();
        if !reader.read_record(&mut fields).map_err(csv_err)? {
            return Err(DataError::Empty {
                path: path.to_owned(),
            });
        }
        let header: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = if i == 0 {
                    h.trim_start_matches('\u{feff}')
                } else {
                    h
                };
                h.trim().to_owned()
            })
            .collect();
        let column = |name: &str| -> Result<usize, DataError> {
            let mut found = header.iter().enumerate().filter(|(_, h)| *h == name);
            match (found.next(), found.next()) {
                (Some((i, _)), None) => Ok(i),
                (Some(_), Some(_)) => Err(DataError::DuplicateColumn {
                    path: path.to_owned(),
                    column: name.to_owned(),
                }),
                (None, _) => Err(DataError::MissingColumn {
                    path: path.to_owned(),
                    column: name.to_owned(),
                }),
            }
        };
        let time_col = column(&spec.timestamp_column)?;
        let feature_cols = spec
            .feature_columns
            .iter()
            .map(|f| column(f))
            .collect::<Result<Vec<_>, _>>()?;
        let label_col = column(&spec.label_column)?;

        let mut labels = LabelParser::new(spec);
        let mut values = Vec::new();
        let mut ys = Vec::new();
        let mut timestamps = Vec::new();
        let mut skipped = SkippedRows::default();
        let mut row = Vec::with_capacity(feature_cols.len());
        while reader.read_record(&mut fields).map_err(csv_err)? {
            if fields.len() == 1 && fields[0].is_empty() {
                continue;
            }
            let line = reader.line();
            if fields.len() != header.len() {
                return Err(DataError::Ragged {
                    path: path.to_owned(),
                    line,
                    expected: header.len(),
                    found: fields.len(),
                });
            }
            let skip = |counter: &mut u64, first: &mut Option<u64>| {
                *counter += 1;
                first.get_or_insert(line);
            };
            let Some(t) = parse_timestamp(&fields[time_col]) else {
                skip(&mut skipped.bad_timestamp, &mut skipped.first_line);
                continue;
            };
            row.clear();
            row.extend(feature_cols.iter().map_while(|&c| {
                fields[c]
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
            }));
            if row.len() != feature_cols.len() {
                skip(&mut skipped.bad_feature, &mut skipped.first_line);
                continue;
            }
            let Some(y) = labels.parse(&fields[label_col]) else {
                skip(&mut skipped.bad_label, &mut skipped.first_line);
                continue;
            };
            values.extend_from_slice(&row);
            ys.push(y);
            timestamps.push(t);
        }
        if labels.others.len() > 1 {
            return Err(DataError::NotBinary {
                path: path.to_owned(),
                column: spec.label_column.clone(),
                positive: labels.positive.clone().unwrap_or_default(),
                others: labels.others,
            });
        }
        if skipped.total() > 0 {
            tracing::warn!(
                path = %path.display(),
                bad_timestamp = skipped.bad_timestamp,
                bad_feature = skipped.bad_feature,
                bad_label = skipped.bad_label,
                first_line = skipped.first_line,
                "training data: skipped rows"
            );
        }
        let mut data = TrainingData {
            features: spec.feature_columns.clone(),
            label,
            values,
            labels: ys,
            timestamps,
            skipped,
        };
        data.sort_by_time();
        Ok(data)
    }

    fn sort_by_time(&mut self) {
        if self.timestamps.is_sorted() {
            return;
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| self.timestamps[i]); // stable: ties keep input order
        *self = self.subset(&order, self.skipped);
    }

    fn subset(&self, order: &[usize], skipped: SkippedRows) -> TrainingData {
        let n = self.features.len();
        let mut values = Vec::with_capacity(order.len() * n);
        for &i in order {
            values.extend_from_slice(&self.values[i * n..(i + 1) * n]);
        }
        TrainingData {
            features: self.features.clone(),
            label: self.label.clone(),
            values,
            labels: order.iter().map(|&i| self.labels[i]).collect(),
            timestamps: order.iter().map(|&i| self.timestamps[i]).collect(),
            skipped,
        }
    }

    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Feature names, in row order.
    #[must_use]
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// The position of feature `name` in each row.
    #[must_use]
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f == name)
    }

    /// The label (its column, kind and positive value).
    #[must_use]
    pub fn label(&self) -> &LabelSpec {
        &self.label
    }

    /// Row `i`, in [`features`](Self::features) order.
    #[must_use]
    pub fn row(&self, i: usize) -> Option<&[f64]> {
        let n = self.features.len();
        self.values
            .get(i * n..(i + 1) * n)
            .filter(|_| i < self.len())
    }

    /// All rows, oldest first.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f64]> + '_ {
        self.values.chunks_exact(self.features.len().max(1))
    }

    /// Labels (binary: 1 for the positive value, 0 otherwise), oldest first.
    #[must_use]
    pub fn labels(&self) -> &[f64] {
        &self.labels
    }

    /// Timestamps, Unix ms, ascending.
    #[must_use]
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps
    }

    /// Rows [`from_csv`](Self::from_csv) skipped (zero for data built otherwise, and for
    /// the parts of a split).
    #[must_use]
    pub fn skipped(&self) -> SkippedRows {
        self.skipped
    }

    /// The time range and row count; `None` when there are no rows.
    #[must_use]
    pub fn range(&self) -> Option<DataRange> {
        Some(DataRange {
            from_ms: *self.timestamps.first()?,
            to_ms: *self.timestamps.last()?,
            rows: self.len() as u64,
        })
    }

    /// The rows with `from_ms ≤ timestamp < to_ms` (a training or evaluation window).
    #[must_use]
    pub fn window(&self, from_ms: i64, to_ms: i64) -> TrainingData {
        let start = self.timestamps.partition_point(|&t| t < from_ms);
        let end = self.timestamps.partition_point(|&t| t < to_ms).max(start);
        let order: Vec<usize> = (start..end).collect();
        self.subset(&order, SkippedRows::default())
    }

    /// Splits into `(train, holdout)`, the holdout being the most recent
    /// `round(len × holdout_fraction)` rows. Rows sharing the boundary's timestamp all go to
    /// the holdout, so no instant is in both parts (the holdout may be a little larger). A
    /// fraction that is NaN or ≤ 0 gives an empty holdout; ≥ 1 puts every row in it.
    #[must_use]
    pub fn split_by_time(&self, holdout_fraction: f64) -> (TrainingData, TrainingData) {
        let n = self.len();
        let fraction = if holdout_fraction.is_nan() {
            0.0
        } else {
            holdout_fraction.clamp(0.0, 1.0)
        };
        let holdout = ((n as f64) * fraction).round() as usize;
        let mut cut = n - holdout.min(n);
        if cut < n {
            while cut > 0 && self.timestamps[cut - 1] == self.timestamps[cut] {
                cut -= 1;
            }
        }
        let first: Vec<usize> = (0..cut).collect();
        let second: Vec<usize> = (cut..n).collect();
        (
            self.subset(&first, SkippedRows::default()),
            self.subset(&second, SkippedRows::default()),
        )
    }
}

fn check_names(features: &[String], label: &LabelSpec) -> Result<(), DataError> {
    if features.is_empty() {
        return Err(DataError::Invalid("no feature columns".into()));
    }
    let mut seen = HashSet::new();
    for f in features {
        if f.is_empty() {
            return Err(DataError::Invalid("a feature name is empty".into()));
        }
        if !seen.insert(f.as_str()) {
            return Err(DataError::Invalid(format!(
                "feature `{f}` is listed more than once"
            )));
        }
    }
    if label.name.is_empty() {
        return Err(DataError::Invalid("the label column name is empty".into()));
    }
    if seen.contains(label.name.as_str()) {
        return Err(DataError::Invalid(format!(
            "the label `{}` is also a feature",
            label.name
        )));
    }
    if label.kind == LabelKind::Binary && label.positive.as_deref().is_none_or(str::is_empty) {
        return Err(DataError::Invalid(
            "a binary label needs a non-empty positive value".into(),
        ));
    }
    Ok(())
}

/// Parses a timestamp: integer or decimal Unix ms, or RFC 3339.
fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(x) = text.parse::<f64>() {
        // Beyond ±2^63 the cast would saturate; reject instead.
        return (x.is_finite() && x.abs() < 9.2e18).then(|| x.round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Label parsing, remembering which non-positive values a binary column holds.
struct LabelParser {
    kind: LabelKind,
    positive: Option<String>,
    positive_number: Option<f64>,
    /// Distinct non-missing values other than the positive one (capped).
    others: Vec<String>,
}

impl LabelParser {
    fn new(spec: &CsvSpec) -> Self {
        let positive = spec.positive_label.as_ref().map(|p| p.trim().to_owned());
        LabelParser {
            kind: spec.label_kind,
            positive_number: positive.as_deref().and_then(|p| p.parse::<f64>().ok()),
            positive,
            others: Vec::new(),
        }
    }

    fn parse(&mut self, text: &str) -> Option<f64> {
        let text = text.trim();
        match self.kind {
            LabelKind::Continuous => text.parse::<f64>().ok().filter(|v| v.is_finite()),
            LabelKind::Binary => {
                if MISSING.iter().any(|m| text.eq_ignore_ascii_case(m)) {
                    return None;
                }
                match &self.positive {
                    Some(positive) => {
                        let number = text.parse::<f64>().ok();
                        let is_positive = text == positive
                            || matches!((number, self.positive_number), (Some(a), Some(b)) if a == b);
                        if is_positive {
                            return Some(1.0);
                        }
                        let key = number.map_or_else(|| text.to_owned(), |x| x.to_string());
                        if self.others.len() < 5 && !self.others.contains(&key) {
                            self.others.push(key);
                        }
                        Some(0.0)
                    }
                    None => {
                        if text.eq_ignore_ascii_case("true") {
                            return Some(1.0);
                        }
                        if text.eq_ignore_ascii_case("false") {
                            return Some(0.0);
                        }
                        match text.parse::<f64>() {
                            Ok(1.0) => Some(1.0),
                            Ok(0.0) => Some(0.0),
                            _ => None,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CsvSpec {
        CsvSpec {
            timestamp_column: "t".into(),
            feature_columns: vec!["a".into(), "b".into()],
            label_column: "y".into(),
            label_kind: LabelKind::Binary,
            positive_label: Some("UP".into()),
        }
    }

    fn write(text: &str) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    /// A throwaway directory removed on drop (no extra dependency).
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU64, Ordering};

        pub struct Dir(PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: AtomicU64 = AtomicU64::new(0);
                let p = std::env::temp_dir().join(format!(
                    "modelgate-data-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).expect("mkdir");
                Dir(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn reads_sorts_and_skips() {
        let (_d, path) = write(
            "t,a,b,y\n3,1,2,UP\n1,0.5,x,DOWN\n2,1.5,2.5,DOWN\n\n0,1,1,\nzz,1,1,UP\n2026-01-01T00:00:00Z,9,9,UP\n",
        );
        let data = TrainingData::from_csv(&path, &spec()).expect("valid");
        assert_eq!(data.len(), 3);
        assert_eq!(data.timestamps(), &[2, 3, 1_767_225_600_000]);
        assert_eq!(data.labels(), &[0.0, 1.0, 1.0]);
        assert_eq!(data.row(0), Some(&[1.5, 2.5][..]));
        assert_eq!(data.row(3), None);
        let s = data.skipped();
        assert_eq!(
            (s.bad_timestamp, s.bad_feature, s.bad_label, s.first_line),
            (1, 1, 1, Some(3))
        );
        assert_eq!(data.range().map(|r| r.rows), Some(3));
    }

    #[test]
    fn rejects_bad_files() {
        let (_d, path) = write("t,a,b,y\n1,1,1,UP\n2,1,1,DOWN\n3,1,1,SIDEWAYS\n");
        assert!(matches!(
            TrainingData::from_csv(&path, &spec()),
            Err(DataError::NotBinary { .. })
        ));
        let (_d, path) = write("t,a,y\n1,1,UP\n");
        assert!(matches!(
            TrainingData::from_csv(&path, &spec()),
            Err(DataError::MissingColumn { column, .. }) if column == "b"
        ));
        let (_d, path) = write("t,a,b,y\n1,1,UP\n");
        assert!(matches!(
            TrainingData::from_csv(&path, &spec()),
            Err(DataError::Ragged { line: 2, .. })
        ));
        let (_d, path) = write("");
        assert!(matches!(
            TrainingData::from_csv(&path, &spec()),
            Err(DataError::Empty { .. })
        ));
    }

    #[test]
    fn split_keeps_ties_together() {
        let label = LabelSpec {
            name: "y".into(),
            positive: None,
            kind: LabelKind::Continuous,
        };
        let data = TrainingData::new(
            vec!["x".into()],
            label,
            (0..10).map(|i| vec![f64::from(i)]).collect(),
            vec![0.0; 10],
            vec![0, 1, 2, 3, 4, 5, 6, 7, 7, 9],
        )
        .expect("valid");
        let (train, holdout) = data.split_by_time(0.25); // 3 rows, but 7 is shared
        assert_eq!(train.len(), 7);
        assert_eq!(holdout.timestamps(), &[7, 7, 9]);
        let (train, holdout) = data.split_by_time(0.2);
        assert_eq!((train.len(), holdout.len()), (7, 3));
        let (train, holdout) = data.split_by_time(f64::NAN);
        assert_eq!((train.len(), holdout.len()), (10, 0));
        let (train, holdout) = data.split_by_time(2.0);
        assert_eq!((train.len(), holdout.len()), (0, 10));
    }
}
