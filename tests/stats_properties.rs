//! Laws of the always-valid statistics on random aggregates: the p-value and the confidence
//! sequence agree (p ≤ α exactly when 0 is outside the sequence), the sequence contains the
//! estimate, the relative bounds contain the point estimate, the running p-value never
//! increases, and no input makes the policy panic.

use std::time::Duration;

use modelgate::stats::sequential::{self, Running};
use modelgate::stats::{Experiment, Policy, Sample, Variant};
use proptest::prelude::*;

fn binary() -> impl Strategy<Value = Sample> {
    (1u64..2_000_000)
        .prop_flat_map(|n| (Just(n), 0..=n))
        .prop_map(|(n, s)| Sample::Binary { n, successes: s })
}

proptest! {
    #[test]
    fn p_value_and_sequence_agree(a in binary(), b in binary(), tau in 1e-4f64..0.5, alpha in 0.001f64..0.3) {
        let tau2 = tau * tau;
        if let Ok(r) = sequential::sequential(&a, &b, tau2, alpha) {
            let d = b.mean() - a.mean();
            prop_assert!(r.difference.contains(d));
            prop_assert!((0.0..=1.0).contains(&r.p_value));
            // Away from the boundary (rounding), rejection and exclusion of 0 coincide.
            let margin = 1e-9 * (r.difference.upper - r.difference.lower);
            if r.difference.lower > margin || r.difference.upper < -margin {
                prop_assert!(r.p_value <= alpha * (1.0 + 1e-6));
            } else if r.difference.contains(0.0) && r.difference.lower < -margin && r.difference.upper > margin {
                prop_assert!(r.p_value >= alpha * (1.0 - 1e-6));
            }
            if a.mean() > 0.0 {
                let rel = b.mean() / a.mean() - 1.0;
                prop_assert!(r.relative.contains(rel), "{rel} {:?}", r.relative);
            }
        }
    }

    #[test]
    fn running_p_value_never_increases(looks in prop::collection::vec((1u64..5_000, 0.0f64..1.0, 0.0f64..1.0), 1..30)) {
        let mut running = Running::default();
        let (mut n, mut sa, mut sb) = (0u64, 0u64, 0u64);
        let mut last = 1.0;
        for (k, ra, rb) in looks {
            n += k;
            sa += (ra * k as f64) as u64;
            sb += (rb * k as f64) as u64;
            let (a, b) = (Sample::Binary { n, successes: sa }, Sample::Binary { n, successes: sb });
            if let Ok(look) = sequential::sequential(&a, &b, 1e-4, 0.05) {
                let p = running.update(&look).p_value;
                prop_assert!(p <= last);
                last = p;
            }
        }
    }

    #[test]
    fn policy_never_panics(
        na in 0u64..10_000, ma in -1e6f64..1e6, va in 0.0f64..1e6,
        nb in 0u64..10_000, mb in -1e6f64..1e6, vb in 0.0f64..1e6,
        w in 0.01f64..10.0,
    ) {
        let e = Experiment {
            variants: vec![
                Variant::new("a", 1.0, Sample::Continuous { n: na, mean: ma, variance: va }),
                Variant::new("b", w, Sample::Continuous { n: nb, mean: mb, variance: vb }),
            ],
            control: 0,
            elapsed: Duration::ZERO,
        };
        let policy = Policy { metric: modelgate::stats::MetricKind::Continuous, ..Policy::default() };
        // One value with a variance is the only invalid input here (a sample variance needs
        // two values): an error, not a panic.
        let one_value = (na == 1 && va > 0.0) || (nb == 1 && vb > 0.0);
        match policy.evaluate(&e) {
            Ok(_) => prop_assert!(!one_value),
            Err(error) => prop_assert!(
                one_value && matches!(error, modelgate::stats::StatsError::InvalidSample(_)),
                "{error}"
            ),
        }
    }
}
