//! Fixed-horizon A/B statistics against statsmodels and SciPy (`tests/oracle/stats_oracle.py`):
//! `proportions_ztest`, `confint_proportions_2indep(method="wald")`,
//! `ttest_ind_from_stats(equal_var=False)` with a Welch interval and delta-method relative
//! intervals computed in NumPy (of `(b − a) / |a|`, also for negative means), and
//! `chisquare`. Cases are generated here (seeded): several
//! sizes (2 to 10^9), rates, means and variances, unequal n. p-values and interval ends must
//! agree within 1e-6 (absolute).

mod common;

use common::{Oracle, Rng};
use modelgate::stats::{Sample, fixed, srm::srm_test};
use serde_json::{Value, json};

const TOLERANCE: f64 = 1e-6;

fn num(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

struct Worst(f64, String);

impl Worst {
    fn check(&mut self, what: &str, got: f64, want: f64, case: &Value) {
        let diff = (got - want).abs();
        assert!(
            diff <= TOLERANCE,
            "{what}: ours {got}, oracle {want} (diff {diff}) on {case}"
        );
        if diff > self.0 {
            *self = Worst(diff, what.to_owned());
        }
    }
}

fn sizes(rng: &mut Rng) -> u64 {
    const SIZES: [u64; 9] = [
        2,
        5,
        30,
        100,
        1_000,
        12_345,
        250_000,
        10_000_000,
        1_000_000_000,
    ];
    SIZES[rng.below(SIZES.len() as u64) as usize]
}

#[test]
fn fixed_horizon_statistics_match_statsmodels_and_scipy() {
    let mut oracle = Oracle::start("stats_oracle.py");
    let mut rng = Rng(0x5a75);
    let mut worst = Worst(0.0, String::new());
    let alphas = [0.05, 0.01, 0.1, 0.2];
    let mut binary = 0;
    while binary < 300 {
        let (na, nb) = (sizes(&mut rng).max(10), sizes(&mut rng).max(10));
        let rate = [0.001, 0.01, 0.1, 0.3, 0.5, 0.9][rng.below(6) as usize];
        let ra = (rate * (0.8 + 0.4 * rng.unit())).min(0.999);
        let rb = (ra * (0.9 + 0.25 * rng.unit())).min(0.999);
        let sa = (ra * na as f64).round() as u64;
        let sb = (rb * nb as f64).round() as u64;
        // The Wald interval and the delta method need some successes and failures.
        if sa == 0 || sb == 0 || sa == na || sb == nb {
            continue;
        }
        binary += 1;
        let alpha = alphas[rng.below(4) as usize];
        let case = json!({"kind": "binary", "a": [na, sa], "b": [nb, sb], "alpha": alpha});
        let want = oracle.ask(&case);
        let (a, b) = (
            Sample::binary(na, sa).unwrap(),
            Sample::binary(nb, sb).unwrap(),
        );
        let test = fixed::two_proportion_z_test(&a, &b).unwrap();
        let lift = fixed::lift(&a, &b, alpha).unwrap();
        worst.check("z p-value", test.p_value, num(&want["p_value"]), &case);
        assert!(
            (test.statistic - num(&want["statistic"])).abs()
                <= 1e-6 * test.statistic.abs().max(1.0)
        );
        worst.check(
            "diff ci lower",
            lift.absolute_ci.lower,
            num(&want["ci"][0]),
            &case,
        );
        worst.check(
            "diff ci upper",
            lift.absolute_ci.upper,
            num(&want["ci"][1]),
            &case,
        );
        worst.check("relative", lift.relative, num(&want["relative"]), &case);
        worst.check(
            "relative lower",
            lift.relative_ci.lower,
            num(&want["relative_ci"][0]),
            &case,
        );
        worst.check(
            "relative upper",
            lift.relative_ci.upper,
            num(&want["relative_ci"][1]),
            &case,
        );
    }
    for _ in 0..300 {
        let (na, nb) = (sizes(&mut rng), sizes(&mut rng));
        let scale = [1e-3, 1.0, 50.0, 1e4][rng.below(4) as usize];
        // A third of the metrics are negative (a loss, a log-likelihood): the relative lift
        // is (mb − ma) / |ma|.
        let sign = if rng.below(3) == 0 { -1.0 } else { 1.0 };
        let ma = sign * scale * (0.5 + rng.unit());
        let mb = ma * (0.95 + 0.1 * rng.unit());
        let va = (scale * (0.1 + 2.0 * rng.unit())).powi(2);
        let vb = va * (0.25 + 4.0 * rng.unit());
        let alpha = alphas[rng.below(4) as usize];
        let case =
            json!({"kind": "continuous", "a": [na, ma, va], "b": [nb, mb, vb], "alpha": alpha});
        let want = oracle.ask(&case);
        let (a, b) = (
            Sample::continuous(na, ma, va).unwrap(),
            Sample::continuous(nb, mb, vb).unwrap(),
        );
        let test = fixed::welch_t_test(&a, &b).unwrap();
        let lift = fixed::lift(&a, &b, alpha).unwrap();
        worst.check("welch p-value", test.p_value, num(&want["p_value"]), &case);
        let df = test.degrees_of_freedom.unwrap();
        assert!((df - num(&want["df"])).abs() <= 1e-9 * df, "{case}");
        // Interval ends relative to the metric's scale.
        let s = scale.max(1.0);
        worst.check(
            "welch ci lower",
            lift.absolute_ci.lower / s,
            num(&want["ci"][0]) / s,
            &case,
        );
        worst.check(
            "welch ci upper",
            lift.absolute_ci.upper / s,
            num(&want["ci"][1]) / s,
            &case,
        );
        worst.check(
            "relative lower",
            lift.relative_ci.lower,
            num(&want["relative_ci"][0]),
            &case,
        );
        worst.check(
            "relative upper",
            lift.relative_ci.upper,
            num(&want["relative_ci"][1]),
            &case,
        );
    }
    for _ in 0..200 {
        let k = 2 + rng.below(4) as usize;
        let weights: Vec<f64> = (0..k).map(|_| 0.1 + rng.unit()).collect();
        let total = sizes(&mut rng).max(20) as f64;
        let sum: f64 = weights.iter().sum();
        let skew = if rng.below(3) == 0 { 0.05 } else { 0.002 };
        let counts: Vec<u64> = weights
            .iter()
            .map(|w| (total * w / sum * (1.0 + skew * (rng.unit() - 0.5))).round() as u64)
            .collect();
        let case = json!({"kind": "srm", "counts": counts, "weights": weights});
        let want = oracle.ask(&case);
        let got = srm_test(&counts, &weights).unwrap();
        worst.check("srm p-value", got.p_value, num(&want["p_value"]), &case);
        let stat = num(&want["statistic"]);
        assert!(
            (got.statistic - stat).abs() <= 1e-8 * stat.max(1.0),
            "{case}"
        );
    }
    println!("max abs diff {:.3e} ({})", worst.0, worst.1);
}

/// Welch p-values where they matter (t between 0.5 and 3, p between 0.003 and 0.6) at
/// degrees of freedom from 10 to 10^10, against SciPy's `ttest_ind_from_stats`: relative
/// error at most 1e-9. `statrs`' Student-t tail alone is off by about 2e-6 at 2·10^9
/// degrees of freedom; fixed.rs uses a large-df normal transform there.
#[test]
fn welch_p_values_match_scipy_at_any_degrees_of_freedom() {
    let mut oracle = Oracle::start("stats_oracle.py");
    let mut rng = Rng(0x7d_f00d);
    let mut worst = 0.0f64;
    for i in 0..400 {
        // log10 of the target df spread evenly over [1, 10], with some unequal arms.
        let df = 10f64.powf(1.0 + 9.0 * (f64::from(i) + rng.unit()) / 400.0);
        let ratio = if rng.below(2) == 0 {
            1.0
        } else {
            1.0 + 3.0 * rng.unit()
        };
        let na = ((df / 2.0) as u64 + 1).max(6);
        let nb = ((na as f64 * ratio) as u64).max(6);
        let va = 0.5 + rng.unit();
        let vb = va * (0.5 + rng.unit());
        let t = 0.5 + 2.5 * rng.unit();
        let ma = 3.0 * (rng.unit() - 0.5);
        let mb = ma + t * (va / na as f64 + vb / nb as f64).sqrt();
        let case =
            json!({"kind": "continuous", "a": [na, ma, va], "b": [nb, mb, vb], "alpha": 0.05});
        let want = oracle.ask(&case);
        let (a, b) = (
            Sample::continuous(na, ma, va).unwrap(),
            Sample::continuous(nb, mb, vb).unwrap(),
        );
        let got = fixed::welch_t_test(&a, &b).unwrap();
        let p = num(&want["p_value"]);
        let error = (got.p_value - p).abs() / p;
        assert!(
            error <= 1e-9,
            "p-value: ours {}, SciPy {p} (relative error {error:.2e}, df {}) on {case}",
            got.p_value,
            got.degrees_of_freedom.unwrap()
        );
        worst = worst.max(error);
    }
    println!("welch p-values, df 10 to 1e10: max relative error {worst:.3e}");
}

/// Counts whose sums exceed `u64::MAX` (the pooled rate adds the two arms): the z-test
/// still matches statsmodels (computed in floats), within 1e-6 absolute on the p-value.
#[test]
fn z_test_with_counts_near_the_u64_limit() {
    let mut oracle = Oracle::start("stats_oracle.py");
    let cases: [(u64, u64, u64, u64); 4] = [
        (
            10_000_000_000_000_000_000,
            1_000_000_000_000_000_000,
            10_000_000_000_000_000_000,
            1_000_000_001_000_000_000,
        ),
        (
            u64::MAX,
            u64::MAX / 2,
            u64::MAX,
            u64::MAX / 2 + 3_000_000_000,
        ),
        (u64::MAX, 3_000_000_000_000_000_000, 1_000_000, 162_000),
        (
            12_000_000_000_000_000_000,
            10_000_000_000_000_000_000,
            12_000_000_000_000_000_000,
            9_999_999_990_000_000_000,
        ),
    ];
    for (na, sa, nb, sb) in cases {
        let case = json!({"kind": "binary", "a": [na, sa], "b": [nb, sb], "alpha": 0.05});
        let want = oracle.ask(&case);
        let got = fixed::two_proportion_z_test(
            &Sample::binary(na, sa).unwrap(),
            &Sample::binary(nb, sb).unwrap(),
        )
        .unwrap();
        let p = num(&want["p_value"]);
        assert!(
            (got.p_value - p).abs() <= TOLERANCE,
            "ours {}, statsmodels {p} on {case}",
            got.p_value
        );
    }
}

/// The quantiles behind the (1 − α) intervals for α from 0.2 down to 1e-300, against
/// SciPy's `norm.isf(α/2)` and `t.isf(α/2, df)` (df 1 to 10^9): relative error at most
/// 1e-9. Formed as `1 − α/2`, the normal quantile loses precision from α ≈ 1e-15 (8.014
/// instead of 8.027) and is infinite at 1e-16. Seen through [`fixed::mean_interval`]:
/// a binary sample with n = 4·10^6 and half successes has standard error 1/4000 (so its
/// interval stays inside [0, 1]), a continuous one with variance n has standard error 1.
#[test]
fn interval_quantiles_match_scipy_down_to_tiny_alpha() {
    let mut oracle = Oracle::start("stats_oracle.py");
    let alphas = [
        0.2, 0.05, 1e-3, 1e-6, 1e-9, 1e-12, 1e-15, 1e-16, 1e-20, 1e-50, 1e-100, 1e-200, 1e-300,
    ];
    let dfs: [u64; 12] = [
        1,
        2,
        5,
        10,
        30,
        100,
        999,
        1_000,
        10_000,
        100_000,
        10_000_000,
        1_000_000_000,
    ];
    let mut worst = 0.0f64;
    let relative = |got: f64, want: f64| ((got - want) / want).abs();
    for alpha in alphas {
        let binary =
            fixed::mean_interval(&Sample::binary(4_000_000, 2_000_000).unwrap(), alpha).unwrap();
        for df in dfs {
            let case = json!({"kind": "quantiles", "alpha": alpha, "df": df});
            let want = oracle.ask(&case);
            let z = num(&want["z"]);
            let z_error = relative(4000.0 * (binary.upper - 0.5), z);
            assert!(z_error <= 1e-9, "normal: {binary:?}, SciPy {z} on {case}");
            assert!(binary.lower.is_finite(), "{case}");
            // SciPy has no answer for a few far tails at small df (α = 1e-300, df 5 and 10).
            let Some(t) = want["t"].as_f64() else {
                continue;
            };
            let n = df + 1;
            let sample = Sample::continuous(n, 0.0, n as f64).unwrap();
            let got = fixed::mean_interval(&sample, alpha).unwrap();
            if got.upper == f64::INFINITY {
                // Beyond the quantiles resolved (df = 1 at α = 1e-300: 6e299): unbounded,
                // which covers.
                assert!(t >= 1e150, "{got:?}, SciPy {t} on {case}");
                continue;
            }
            let t_error = relative(got.upper, t);
            assert!(
                t_error <= 1e-9,
                "t: {got:?}, SciPy {t} (relative error {t_error:.2e}) on {case}"
            );
            worst = worst.max(z_error).max(t_error);
        }
    }
    println!("interval quantiles, alpha down to 1e-300: max relative error {worst:.3e}");
}

/// One variant's Wald interval of a proportion, as statsmodels' `proportion_confint(...,
/// method="normal")`: clipped to [0, 1] (1 success in 10 gives [0, 0.286], not
/// [-0.086, 0.286]). Ends within 1e-12.
#[test]
fn proportion_intervals_are_clipped_like_statsmodels() {
    let mut oracle = Oracle::start("stats_oracle.py");
    let counts: [(u64, u64); 11] = [
        (1, 0),
        (1, 1),
        (5, 4),
        (10, 0),
        (10, 1),
        (10, 9),
        (10, 10),
        (30, 1),
        (1_000, 500),
        (1_000_000, 3),
        (1_000_000, 999_999),
    ];
    for (n, successes) in counts {
        for alpha in [0.2, 0.05, 0.01] {
            let case =
                json!({"kind": "proportion", "n": n, "successes": successes, "alpha": alpha});
            let want = oracle.ask(&case);
            let got = fixed::mean_interval(&Sample::binary(n, successes).unwrap(), alpha).unwrap();
            for (end, value) in [got.lower, got.upper].into_iter().enumerate() {
                let expected = num(&want["ci"][end]);
                assert!(
                    (value - expected).abs() <= 1e-12,
                    "{got:?}, statsmodels {} on {case}",
                    want["ci"]
                );
            }
        }
    }
}
