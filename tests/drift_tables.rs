//! `drift::table` on small in-memory CSV files: categorical columns with more distinct values
//! than a category summary holds, columns with no values, duplicate or unknown columns,
//! infinities. Exact statistics are checked against SciPy (`chi2_contingency`,
//! correction=False; tolerance 1e-9 relative).

mod common;

use std::collections::BTreeMap;

use common::{Oracle, Rng};
use modelgate::drift::table::{ColumnDrift, TableOptions, compare, profile_reader};
use modelgate::drift::{Comparison, Thresholds, Verdict};
use modelgate::sketch::FeatureProfile;

fn csv(header: &str, rows: &[String]) -> String {
    let mut text = format!("{header}\n");
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    text
}

fn run(reference: &str, current: &str, options: &TableOptions) -> Vec<ColumnDrift> {
    let r = profile_reader(reference.as_bytes(), "ref.csv", options).expect("reference");
    let c = profile_reader(current.as_bytes(), "cur.csv", options).expect("current");
    compare(&r, &c, &Thresholds::default()).expect("compare")
}

fn exact() -> TableOptions {
    TableOptions {
        exact: true,
        ..TableOptions::default()
    }
}

/// `n` keys `k0..k{categories-1}`; with `shift`, half of them go to the first 20 keys.
fn keys(rng: &mut Rng, n: usize, categories: u64, shift: bool) -> Vec<String> {
    (0..n)
        .map(|_| {
            if shift && rng.below(2) == 0 {
                format!("k{}", rng.below(20))
            } else {
                format!("k{}", rng.below(categories))
            }
        })
        .collect()
}

fn categorical(result: &ColumnDrift) -> &modelgate::drift::CategoricalComparison {
    match &result.drift.as_ref().expect("statistics").comparison {
        Comparison::Categorical(c) => c,
        other => panic!("not categorical: {other:?}"),
    }
}

#[test]
fn many_categories_do_not_drift_by_themselves() {
    let mut oracle = Oracle::start("drift_oracle.py");
    for (categories, seed) in [(257u64, 1u64), (257, 2), (400, 3), (400, 4), (1000, 5)] {
        let mut rng = Rng(seed);
        let a = keys(&mut rng, 3000, categories, false);
        let b = keys(&mut rng, 3000, categories, false);
        let (ra, rb) = (csv("c", &a), csv("c", &b));

        // Exact: every category counted; the chi-square is SciPy's on the full table.
        let got = run(&ra, &rb, &exact());
        let c = categorical(&got[0]);
        assert!(!c.approximate && c.least_drift.is_none());
        assert_eq!(got[0].verdict(), "none", "{categories}: {c:?}");
        let count = |v: &[String]| {
            let mut m: BTreeMap<String, f64> = BTreeMap::new();
            for k in v {
                *m.entry(k.clone()).or_default() += 1.0;
            }
            m
        };
        let (_, va, vb) = modelgate::drift::categorical::align(&count(&a), &count(&b));
        let want = oracle.ask(&serde_json::json!({"kind": "categorical", "a": va, "b": vb}));
        let chi2 = want["chi2"].as_f64().expect("chi2");
        assert!(
            (c.chi_square - chi2).abs() <= 1e-9 * chi2,
            "{categories}: chi2 {} vs scipy {chi2}",
            c.chi_square
        );
        assert_eq!(
            c.degrees_of_freedom as f64,
            want["dof"].as_f64().expect("dof")
        );

        // Sketch: the summaries lost mass, the result is flagged approximate and no alarm.
        let got = run(&ra, &rb, &TableOptions::default());
        let c = categorical(&got[0]);
        assert!(c.approximate && c.least_drift.is_some(), "{categories}");
        assert_ne!(got[0].verdict(), "drift", "{categories}: {c:?}");
        assert!(
            got[0]
                .drift
                .as_ref()
                .and_then(|d| d.hint.as_ref())
                .is_some()
        );

        // The same through the sidecar's profiles.
        let (mut pa, mut pb) = (FeatureProfile::categorical(), FeatureProfile::categorical());
        a.iter().for_each(|k| pa.update_category(k));
        b.iter().for_each(|k| pb.update_category(k));
        let v = modelgate::drift::profiles::compare_profiles(
            &[("c", &pa, &pb)],
            &Thresholds::default(),
        );
        assert_ne!(v[0].verdict, Verdict::Drift, "{categories}: {v:?}");
    }
}

#[test]
fn a_real_shift_over_many_categories_still_drifts() {
    for (categories, seed) in [(257u64, 11u64), (400, 12)] {
        let mut rng = Rng(seed);
        let a = keys(&mut rng, 3000, categories, false);
        let b = keys(&mut rng, 3000, categories, true);
        let (ra, rb) = (csv("c", &a), csv("c", &b));
        for options in [exact(), TableOptions::default()] {
            let got = run(&ra, &rb, &options);
            assert_eq!(
                got[0].verdict(),
                "drift",
                "{categories}, exact {}: {:?}",
                options.exact,
                got[0]
            );
        }
        let (mut pa, mut pb) = (FeatureProfile::categorical(), FeatureProfile::categorical());
        a.iter().for_each(|k| pa.update_category(k));
        b.iter().for_each(|k| pb.update_category(k));
        let v = modelgate::drift::profiles::compare_profiles(
            &[("c", &pa, &pb)],
            &Thresholds::default(),
        );
        assert_eq!(v[0].verdict, Verdict::Drift, "{categories}: {v:?}");
    }
}

#[test]
fn a_column_without_values_gets_no_statistics() {
    // `x` is numeric with no values in the current file, `c` categorical with none in the
    // reference, `y` has values on both sides.
    let mut rng = Rng(21);
    let reference: Vec<String> = (0..200)
        .map(|i| format!("{},,{}", rng.unit(), i % 7))
        .collect();
    let current: Vec<String> = (0..200)
        .map(|i| {
            let x = if i % 2 == 0 { "" } else { "NaN" };
            format!("{x},{},{}", ["a", "b"][i % 2], i % 7)
        })
        .collect();
    let (r, c) = (csv("x,c,y", &reference), csv("x,c,y", &current));
    for options in [exact(), TableOptions::default()] {
        let got = run(&r, &c, &options);
        let names: Vec<&str> = got.iter().map(|d| d.column.as_str()).collect();
        assert_eq!(names, ["x", "c", "y"]);
        for (d, side, n, m) in [(&got[0], "current", 200, 0), (&got[1], "reference", 0, 200)] {
            assert_eq!(d.verdict(), "no_data", "{d:?}");
            assert!(d.drift.is_none());
            assert_eq!((d.n_reference, d.n_current), (n, m));
            let why = d.no_data.as_deref().expect("a reason");
            assert!(why.contains(&format!("the {side} file")), "{why}");
        }
        assert_eq!(got[2].verdict(), "none");
        assert!(got[2].no_data.is_none());
        // Only `y` is tested: its adjusted p-value is its own.
        let y = got[2].drift.as_ref().expect("statistics");
        assert!(matches!(&y.comparison, Comparison::Numeric(n) if n.p_value == y.adjusted_p_value));
    }
    // The CLI prints nulls, never numbers, for such a column.
    let dir = std::env::temp_dir().join(format!("modelgate-drift-tables-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("r.csv"), &r).expect("write");
    std::fs::write(dir.join("c.csv"), &c).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["drift", "--json", "--reference"])
        .arg(dir.join("r.csv"))
        .arg("--current")
        .arg(dir.join("c.csv"))
        .output()
        .expect("run modelgate drift");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 3);
    for line in &lines[..2] {
        assert_eq!(line["verdict"], "no_data", "{line}");
        for key in [
            "ks",
            "p_value",
            "psi",
            "psi_no_drift_quantile",
            "wasserstein",
            "adjusted_p_value",
        ] {
            assert!(line[key].is_null(), "{key} in {line}");
        }
        assert!(
            line["hint"]
                .as_str()
                .is_some_and(|h| h.contains("no values"))
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_column_name_twice_is_an_error_naming_it() {
    let good = "x,y\n1,2\n3,4\n";
    for (reference, current, file) in [
        ("x,x\n1,2\n3,4\n", good, "ref.csv"),
        (good, "y,x,y\n1,2,3\n4,5,6\n", "cur.csv"),
    ] {
        let r = profile_reader(reference.as_bytes(), "ref.csv", &exact());
        let c = profile_reader(current.as_bytes(), "cur.csv", &exact());
        let err = r.and(c).expect_err("duplicate column");
        assert_eq!(err.file, file);
        let name = if file == "ref.csv" { "x" } else { "y" };
        assert!(
            err.reason.contains(&format!("`{name}`")) && err.reason.contains("more than once"),
            "{err}"
        );
    }
}

#[test]
fn wasserstein_with_infinite_values_is_infinite() {
    // SciPy: wasserstein_distance([0, 1, inf], [0, 1, 2]) = inf (not 0, as the finite part
    // alone would give).
    let cases = [("0\n1\ninf\n", "0\n1\n2\n"), ("0\n1\n2\n", "-inf\n1\n2\n")];
    for (reference, current) in cases {
        let (r, c) = (format!("x\n{reference}"), format!("x\n{current}"));
        for options in [exact(), TableOptions::default()] {
            let got = run(&r, &c, &options);
            let d = got[0].drift.as_ref().expect("statistics");
            let Comparison::Numeric(n) = &d.comparison else {
                panic!("not numeric: {d:?}");
            };
            assert!(n.wasserstein.is_some_and(|w| w == f64::INFINITY), "{n:?}");
            assert!(
                d.hint.as_deref().is_some_and(|h| h.contains("infinite")),
                "{d:?}"
            );
        }
    }
    // Finite values only: finite, as before.
    let got = run("x\n0\n1\n2\n", "x\n0\n1\n3\n", &exact());
    let Comparison::Numeric(n) = &got[0].drift.as_ref().expect("statistics").comparison else {
        panic!("not numeric");
    };
    assert!((n.wasserstein.expect("finite") - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn a_byte_order_mark_is_skipped() {
    // Spreadsheet programs start CSV files with a UTF-8 BOM: the first column is still `x`.
    let with_bom = "\u{feff}x,y\n1,a\n2,b\n";
    let plain = "x,y\n1,a\n2,b\n";
    let options = TableOptions {
        columns: Some(vec!["x".into()]),
        ..exact()
    };
    let got = run(with_bom, plain, &options);
    assert_eq!(got[0].column, "x");
    assert_eq!(got[0].verdict(), "none");
    let got = run(plain, with_bom, &TableOptions::default());
    assert_eq!(got.len(), 2);
}

#[test]
fn forced_columns_must_exist_and_not_conflict() {
    let text = "x,y\n1,a\n2,b\n";
    let read = |options: TableOptions| {
        profile_reader(text.as_bytes(), "ref.csv", &options).expect_err("bad options")
    };
    let err = read(TableOptions {
        numeric: vec!["z".into()],
        ..TableOptions::default()
    });
    assert!(
        err.reason.contains("`z`") && err.reason.contains("not in the header"),
        "{err}"
    );
    let err = read(TableOptions {
        categorical: vec!["w".into()],
        ..TableOptions::default()
    });
    assert!(
        err.reason.contains("`w`") && err.reason.contains("not in the header"),
        "{err}"
    );
    let err = read(TableOptions {
        numeric: vec!["x".into()],
        categorical: vec!["x".into()],
        ..TableOptions::default()
    });
    assert!(
        err.reason.contains("`x`") && err.reason.contains("both"),
        "{err}"
    );
}

/// Values in a bin the reference leaves empty (here past its largest value, with ties) are
/// drift, whatever the sample size: they must not switch PSI off. Reference: 1..5 in turn;
/// current: the same with every 20th value a 6 (PSI about 0.32, KS 0.05 under its minimum
/// effect, so PSI alone gives the verdict).
#[test]
fn values_past_the_references_range_keep_psi_deciding() {
    let reference: Vec<String> = (0..10_000).map(|i| format!("{}", i % 5 + 1)).collect();
    let current: Vec<String> = (0..10_000)
        .map(|i| {
            if i % 20 == 19 {
                "6".to_owned()
            } else {
                format!("{}", i % 5 + 1)
            }
        })
        .collect();
    let got = run(&csv("x", &reference), &csv("x", &current), &exact());
    let drift = got[0].drift.as_ref().expect("statistics");
    let Comparison::Numeric(n) = &drift.comparison else {
        panic!("not numeric: {drift:?}");
    };
    assert!(n.psi_no_drift_quantile.is_finite(), "{n:?}");
    assert!(n.psi > 0.2, "{n:?}");
    assert_eq!(got[0].verdict(), "drift", "{n:?}");
}

/// A handful of rare categories (typos) in a million-scale column do not switch PSI off.
#[test]
fn a_few_rare_categories_keep_psi_deciding() {
    let mut rng = Rng(0x7e57_0001);
    let mut reference = keys(&mut rng, 20_000, 10, false);
    let mut current = keys(&mut rng, 20_000, 10, false);
    reference.push("typo-1".to_owned());
    current.push("typo-2".to_owned());
    current.push("typo-3".to_owned());
    let got = run(&csv("k", &reference), &csv("k", &current), &exact());
    let c = categorical(&got[0]);
    assert!(c.psi_no_drift_quantile.is_finite(), "{c:?}");
    assert_eq!(got[0].verdict(), "none", "{c:?}");
}

/// Two windows of 100,000 values over 1,000 categories that share none: the category summaries (sketch mode)
/// keep almost nothing but `(other)`, so they cannot say "no drift" (they said `none`, with
/// p 1, for a total shift); exact counts say drift.
#[test]
fn summaries_that_lost_most_values_do_not_claim_no_drift() {
    let mut rng = Rng(0x7e57_0002);
    let reference: Vec<String> = (0..100_000)
        .map(|_| format!("a{}", rng.below(1000)))
        .collect();
    let current: Vec<String> = (0..100_000)
        .map(|_| format!("b{}", rng.below(1000)))
        .collect();
    let sketch = run(
        &csv("k", &reference),
        &csv("k", &current),
        &TableOptions::default(),
    );
    let c = categorical(&sketch[0]);
    assert!(c.approximate && c.untracked_share > 0.5, "{c:?}");
    assert_ne!(sketch[0].verdict(), "none", "{c:?}");
    let exact = run(&csv("k", &reference), &csv("k", &current), &exact());
    assert_eq!(exact[0].verdict(), "drift");
}

/// Missing-value markers: pandas' defaults (as `read_csv` applies them) in one column, NaN
/// spellings and empty fields in another. Numbers with markers stay numeric; the missing
/// counts match pandas' `isna().sum()` exactly; the test of equal missing shares matches
/// statsmodels' `proportions_ztest` (tolerance 1e-9 relative); and in a categorical column
/// `NA` is a category, not a missing value.
#[test]
fn missing_values_match_pandas_and_their_share_is_tested() {
    let mut oracle = Oracle::start("drift_oracle.py");
    let mut rng = Rng(404);
    let markers = modelgate::drift::table::MISSING_TOKENS;
    let nan_spellings = ["", "NaN", "nan", "-nan", "-NaN"];
    // The current file misses `num` five times as often as the reference.
    let rows = |rng: &mut Rng, n: usize, every: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let num = if i % every == 3 {
                    markers[(i / every) % markers.len()].to_owned()
                } else {
                    format!("{:.6}", rng.unit() * 10.0 - 5.0)
                };
                let forced = if i % 37 == 5 {
                    nan_spellings[(i / 37) % nan_spellings.len()].to_owned()
                } else {
                    format!("{:.3}", rng.unit())
                };
                let text = if i % 11 == 0 {
                    "NA"
                } else {
                    ["x", "y", "z"][i % 3]
                };
                format!("{num},{forced},{text}")
            })
            .collect()
    };
    let (r, c) = (
        csv("num,forced,text", &rows(&mut rng, 3000, 50)),
        csv("num,forced,text", &rows(&mut rng, 2000, 10)),
    );
    let options = TableOptions {
        numeric: vec!["forced".into()],
        ..TableOptions::default()
    };
    for options in [
        options.clone(),
        TableOptions {
            exact: true,
            ..options
        },
    ] {
        let got = run(&r, &c, &options);
        let want_r = oracle.ask(&serde_json::json!({"kind": "missing", "csv": r}));
        let want_c = oracle.ask(&serde_json::json!({"kind": "missing", "csv": c}));
        for (d, name) in got.iter().zip(["num", "forced"]) {
            assert_eq!(d.column, name);
            assert_eq!(
                d.kind,
                modelgate::drift::table::ColumnKind::Numeric,
                "{d:?}"
            );
            assert_eq!(
                want_r[name]["float"], true,
                "pandas reads {name} as numbers"
            );
            assert_eq!(
                d.missing_reference,
                want_r[name]["missing"].as_u64().unwrap()
            );
            assert_eq!(d.missing_current, want_c[name]["missing"].as_u64().unwrap());
            assert_eq!(d.n_reference + d.missing_reference, 3000, "{d:?}");
            assert_eq!(d.n_current + d.missing_current, 2000, "{d:?}");
            let want = oracle.ask(&serde_json::json!({
                "kind": "proportions",
                "count": [d.missing_reference, d.missing_current],
                "nobs": [3000, 2000],
            }))["p_value"]
                .as_f64()
                .unwrap();
            let p = d.missing_p_value.expect("a p-value");
            assert!(
                (p - want).abs() <= 1e-9 * want.max(1e-300),
                "{name}: {p} vs {want}"
            );
        }
        // 60 of 3000 against 200 of 2000 missing: a change no one should miss.
        assert!(got[0].missing_p_value.unwrap() < 1e-20, "{:?}", got[0]);
        let text = &got[2];
        assert_eq!(text.kind, modelgate::drift::table::ColumnKind::Categorical);
        assert_eq!((text.missing_reference, text.missing_current), (0, 0));
        assert_eq!(text.missing_p_value, None);
        assert_eq!((text.n_reference, text.n_current), (3000, 2000));
    }

    // The CLI reports the counts in JSON and flags the changed share in its table.
    let dir = std::env::temp_dir().join(format!("modelgate-drift-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("r.csv"), &r).expect("write");
    std::fs::write(dir.join("c.csv"), &c).expect("write");
    let drift = |json: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"));
        command.args(["drift", "--numeric", "forced", "--reference"]);
        command
            .arg(dir.join("r.csv"))
            .arg("--current")
            .arg(dir.join("c.csv"));
        if json {
            command.arg("--json");
        }
        let out = command.output().expect("run modelgate drift");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let lines: Vec<serde_json::Value> = drift(true)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines[0]["missing_reference"], 60);
    assert_eq!(lines[0]["missing_current"], 200);
    assert!(lines[2]["missing_p_value"].is_null());
    // A column missing entirely in one file: no statistics, and its missing line.
    let gone: Vec<String> = (0..50).map(|i| format!("NA,{i}")).collect();
    let kept: Vec<String> = (0..50).map(|i| format!("{},{i}", i as f64 / 7.0)).collect();
    std::fs::write(dir.join("r2.csv"), csv("x,y", &kept)).expect("write");
    std::fs::write(dir.join("c2.csv"), csv("x,y", &gone)).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["drift", "--numeric", "x", "--reference"])
        .arg(dir.join("r2.csv"))
        .arg("--current")
        .arg(dir.join("c2.csv"))
        .output()
        .expect("run modelgate drift");
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        table.contains("no_data")
            && table.contains(
                "missing: 0 of 50 reference rows (0.00%), 50 of 50 current rows (100.00%)"
            ),
        "{table}"
    );
    let table = drift(false);
    assert!(
        table.contains(
            "missing: 60 of 3000 reference rows (2.00%), 200 of 2000 current rows (10.00%)"
        ) && table.contains("the share changed"),
        "{table}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Out-of-range thresholds never panic a comparison: an `alpha` outside `(0, 1)` or NaN, a
/// PSI floor of 0, below 0, NaN or above 1 (the floor falls back to its default on both the
/// numeric and the categorical path, so PSI stays finite). `Thresholds::validate`, which the
/// sidecar's config runs, refuses all of them by name.
#[test]
fn out_of_range_thresholds_neither_panic_nor_give_infinite_psi() {
    use modelgate::drift::{ExactSample, compare_categorical, compare_numeric};
    let reference = ExactSample::new((0..1000).map(f64::from).collect());
    let current = ExactSample::new((0..1000).map(|i| f64::from(i) * 1.5).collect());
    let counts = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    let (cat_ref, cat_cur) = (
        counts(&[("a", 50.0), ("b", 50.0)]),
        counts(&[("a", 50.0), ("b", 49.0), ("c", 1.0)]),
    );
    for alpha in [1.5, 1.0, 0.0, -0.1, f64::NAN] {
        for psi_epsilon in [0.0, -1.0, f64::NAN, 5.0, 1e-4] {
            let t = Thresholds {
                alpha,
                psi_epsilon,
                ..Thresholds::default()
            };
            let numeric = compare_numeric(&reference, &current, None, &t);
            assert!(
                numeric.psi.is_finite(),
                "alpha {alpha}, floor {psi_epsilon}"
            );
            let categorical = compare_categorical(&cat_ref, &cat_cur, &t);
            assert!(
                categorical.psi.is_finite(),
                "alpha {alpha}, floor {psi_epsilon}: {}",
                categorical.psi
            );
            let refused = t.validate().expect_err("out of range");
            assert!(
                refused.contains("alpha") || refused.contains("psi_epsilon"),
                "{refused}"
            );
        }
    }
    assert_eq!(Thresholds::default().validate(), Ok(()));
    let inverted = Thresholds {
        psi_warning: 0.3,
        ..Thresholds::default()
    };
    assert!(inverted.validate().unwrap_err().contains("psi_warning"));
}
