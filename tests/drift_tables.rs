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
    match &result.drift.comparison {
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
        assert_eq!(got[0].drift.verdict, Verdict::None, "{categories}: {c:?}");
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
        assert_ne!(got[0].drift.verdict, Verdict::Drift, "{categories}: {c:?}");
        assert!(got[0].drift.hint.is_some());

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
                got[0].drift.verdict,
                Verdict::Drift,
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
