//! CSV input for `modelgate abtest`: per-variant observations or aggregates.
//!
//! Accepted headers (case-insensitive, spaces trimmed):
//!
//! * `variant,value`: one observation per row; all values 0/1 (or `true`/`false`) make a
//!   binary metric unless `continuous` is asked for, anything else a continuous one. Memory
//!   is O(variants): rows fold into Welford moments.
//! * `variant,n,mean,variance`: one continuous aggregate per variant (sample variance).
//! * `variant,n,successes`: one binary aggregate per variant.
//!
//! Fields are split on commas (no quoting); empty lines are skipped, and so is a UTF-8
//! byte order mark at the start of the file. Variants keep the
//! order in which they first appear.

use super::{MetricKind, Sample, StatsError};
use crate::metrics::Moments;

/// The parsed file: variant names in order of appearance and their aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantTable {
    /// Variant names.
    pub names: Vec<String>,
    /// One aggregate per name.
    pub samples: Vec<Sample>,
}

fn error(line: usize, message: impl Into<String>) -> StatsError {
    StatsError::Csv {
        line,
        message: message.into(),
    }
}

fn count(field: &str, column: &str, line: usize) -> Result<u64, StatsError> {
    match field.parse::<i128>() {
        Ok(v) if v < 0 => Err(error(line, format!("{column} must be >= 0, got {v}"))),
        Ok(v) => u64::try_from(v).map_err(|_| error(line, format!("{column} is too large: {v}"))),
        Err(_) => Err(error(
            line,
            format!("{column} must be a non-negative integer, got {field:?}"),
        )),
    }
}

fn number(field: &str, column: &str, line: usize) -> Result<f64, StatsError> {
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(error(
            line,
            format!("{column} must be a finite number, got {field:?}"),
        )),
    }
}

enum Layout {
    Observations,
    MeanVariance,
    Successes,
}

/// Parses a whole file. `metric` forces the kind of an observation file and is checked
/// against an aggregate header. Errors name the line and the field.
pub fn parse_csv(text: &str, metric: Option<MetricKind>) -> Result<VariantTable, StatsError> {
    // A UTF-8 byte order mark (as Excel and Notepad write) is not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| error(0, "the file is empty: expected a header"))?;
    let columns: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let layout = match columns.as_slice() {
        ["variant", "value"] => Layout::Observations,
        ["variant", "n", "mean", "variance"] => Layout::MeanVariance,
        ["variant", "n", "successes"] => Layout::Successes,
        _ => {
            return Err(error(
                1,
                format!(
                    "unknown header {header:?}: expected `variant,value`, \
                     `variant,n,mean,variance` or `variant,n,successes`"
                ),
            ));
        }
    };
    match (&layout, metric) {
        (Layout::MeanVariance, Some(MetricKind::Binary)) => {
            return Err(error(
                1,
                "--metric binary, but the header has mean and variance (continuous)",
            ));
        }
        (Layout::Successes, Some(MetricKind::Continuous)) => {
            return Err(error(
                1,
                "--metric continuous, but the header has successes (binary)",
            ));
        }
        _ => {}
    }
    let mut names: Vec<String> = Vec::new();
    let mut moments: Vec<Moments> = Vec::new();
    let mut ones: Vec<u64> = Vec::new();
    let mut all_binary = true;
    let mut samples: Vec<Sample> = Vec::new();
    for (line, row) in lines {
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(error(
                line,
                format!("expected {} fields, got {}", columns.len(), fields.len()),
            ));
        }
        let name = fields[0];
        if name.is_empty() {
            return Err(error(line, "empty variant name"));
        }
        let index = names.iter().position(|n| n == name);
        match layout {
            Layout::Observations => {
                let value = match fields[1] {
                    "true" | "TRUE" | "True" => 1.0,
                    "false" | "FALSE" | "False" => 0.0,
                    other => number(other, "value", line)?,
                };
                let index = index.unwrap_or_else(|| {
                    names.push(name.to_owned());
                    moments.push(Moments::default());
                    ones.push(0);
                    names.len() - 1
                });
                if value == 1.0 {
                    ones[index] += 1;
                } else if value != 0.0 {
                    all_binary = false;
                }
                moments[index].push(value);
            }
            Layout::MeanVariance | Layout::Successes => {
                if index.is_some() {
                    return Err(error(
                        line,
                        format!("variant {name:?} appears twice: give one aggregate row each"),
                    ));
                }
                let n = count(fields[1], "n", line)?;
                let sample = if let Layout::Successes = layout {
                    let successes = count(fields[2], "successes", line)?;
                    if successes > n {
                        return Err(error(
                            line,
                            format!("successes ({successes}) exceed n ({n})"),
                        ));
                    }
                    Sample::binary(n, successes)
                } else {
                    let mean = number(fields[2], "mean", line)?;
                    let variance = number(fields[3], "variance", line)?;
                    if variance < 0.0 {
                        return Err(error(
                            line,
                            format!("variance must be >= 0, got {variance}"),
                        ));
                    }
                    Sample::continuous(n, mean, variance)
                }
                .map_err(|e| error(line, e.to_string()))?;
                names.push(name.to_owned());
                samples.push(sample);
            }
        }
    }
    if let Layout::Observations = layout {
        let binary = match metric {
            Some(MetricKind::Binary) if !all_binary => {
                return Err(error(
                    0,
                    "--metric binary, but some values are neither 0 nor 1",
                ));
            }
            Some(kind) => kind == MetricKind::Binary,
            None => all_binary,
        };
        samples = moments
            .iter()
            .zip(&ones)
            .map(|(m, &k)| {
                if binary {
                    Sample::binary(m.count, k)
                } else {
                    Sample::try_from(*m)
                }
            })
            .collect::<Result<_, _>>()?;
    }
    if names.len() < 2 {
        return Err(error(
            0,
            format!("need at least two variants, found {}", names.len()),
        ));
    }
    Ok(VariantTable { names, samples })
}

/// Parses `a=0.5,b=0.5` into one weight per name (all names must be given, each once,
/// weights positive and finite); `None` gives equal weights.
pub fn parse_weights(spec: Option<&str>, names: &[String]) -> Result<Vec<f64>, StatsError> {
    let Some(spec) = spec else {
        return Ok(vec![1.0; names.len()]);
    };
    let mut weights = vec![None; names.len()];
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| {
            StatsError::InvalidWeights(format!("expected name=weight, got {part:?}"))
        })?;
        let index = names.iter().position(|n| n == name.trim()).ok_or_else(|| {
            StatsError::InvalidWeights(format!(
                "unknown variant {:?} (the file has {})",
                name.trim(),
                names.join(", ")
            ))
        })?;
        let weight: f64 = value.trim().parse().map_err(|_| {
            StatsError::InvalidWeights(format!("weight of {name} is not a number: {value:?}"))
        })?;
        if !(weight.is_finite() && weight > 0.0) {
            return Err(StatsError::InvalidWeights(format!(
                "weight of {name} must be positive, got {weight}"
            )));
        }
        if weights[index].replace(weight).is_some() {
            return Err(StatsError::InvalidWeights(format!(
                "the weight of {} is given twice",
                name.trim()
            )));
        }
    }
    weights
        .iter()
        .zip(names)
        .map(|(w, n)| w.ok_or_else(|| StatsError::InvalidWeights(format!("no weight for {n}"))))
        .collect()
}

/// The control's index: the variant named `requested`, else one named `control`, else the
/// first.
pub fn pick_control(names: &[String], requested: Option<&str>) -> Result<usize, StatsError> {
    match requested {
        Some(name) => names.iter().position(|n| n == name).ok_or_else(|| {
            StatsError::InvalidExperiment(format!(
                "unknown control {name:?} (the file has {})",
                names.join(", ")
            ))
        }),
        None => Ok(names.iter().position(|n| n == "control").unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_become_aggregates() {
        let t = parse_csv("variant,value\na,1\nb,0\na,0\nb,1\nb,1\n", None).unwrap();
        assert_eq!(t.names, ["a", "b"]);
        assert_eq!(t.samples[1], Sample::binary(3, 2).unwrap());
        let t = parse_csv("variant,value\na,1.5\nb,0\na,2.5\nb,1\n", None).unwrap();
        assert_eq!(t.samples[0].kind(), MetricKind::Continuous);
        assert!((t.samples[0].mean() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let e = parse_csv("variant,n,successes\na,10,3\nb,10,11\n", None).unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(parse_csv("variant,n,successes\na,-1,0\nb,1,0\n", None).is_err());
        assert!(parse_csv("variant,foo\na,1\n", None).is_err());
        assert!(parse_csv("variant,value\na,1\na,0\n", None).is_err());
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let plain = "variant,n,successes\na,10,3\nb,10,4\n";
        let with_bom = format!("\u{feff}{plain}");
        assert_eq!(
            parse_csv(&with_bom, None).unwrap(),
            parse_csv(plain, None).unwrap()
        );
        // Only at the start of the file.
        assert!(
            parse_csv("variant,n,successes\n\u{feff}a,10,3\nb,10,4\n", None)
                .unwrap()
                .names
                .contains(&"\u{feff}a".to_owned())
        );
    }

    #[test]
    fn a_weight_given_twice_is_an_error() {
        let names = ["a".to_owned(), "b".to_owned()];
        assert_eq!(
            parse_weights(Some("a=1,b=2"), &names).unwrap(),
            vec![1.0, 2.0]
        );
        let e = parse_weights(Some("a=1, b=2, a=3"), &names).unwrap_err();
        assert!(
            e.to_string().contains("the weight of a is given twice"),
            "{e}"
        );
    }
}
