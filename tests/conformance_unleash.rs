//! The `unleash` hash scheme against Unleash's own engine (`unleash-yggdrasil`): same rollout
//! decision and same variant for 10,000 random user ids per setting.

mod common;

use common::Rng;
use modelgate::route::{ExperimentConfig, Router, RouterConfig, VariantConfig};
use unleash_yggdrasil::{Context, EngineState, UpdateMessage};

fn engine(group: &str, rollout: u32, variants: &[(String, u32)]) -> EngineState {
    let variants: Vec<serde_json::Value> = variants
        .iter()
        .map(|(name, weight)| serde_json::json!({"name": name, "weight": weight, "weightType": "fix", "stickiness": "userId"}))
        .collect();
    let features = serde_json::json!({
        "version": 2,
        "features": [{
            "name": "flag",
            "enabled": true,
            "strategies": [{
                "name": "flexibleRollout",
                "constraints": [],
                "parameters": {"rollout": rollout.to_string(), "stickiness": "userId", "groupId": group},
                "variants": variants,
            }],
            "variants": [],
        }],
    });
    let engine = EngineState::default();
    let warnings = engine.take_state(UpdateMessage::FullResponse(
        serde_json::from_value(features).expect("features"),
    ));
    assert!(
        warnings.as_ref().is_none_or(|w| w.is_empty()),
        "engine warnings: {warnings:?}"
    );
    engine
}

fn check(
    name: &str,
    strategy: &str,
    coverage: f64,
    weights: &[f64],
    percent: Option<f64>,
    rng: &mut Rng,
) -> usize {
    let variants: Vec<VariantConfig> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| VariantConfig {
            name: format!("v{i}"),
            weight: (strategy == "ab").then_some(w),
            model: None,
        })
        .collect();
    let config = RouterConfig {
        experiments: vec![ExperimentConfig {
            name: name.into(),
            hash: Some("unleash".into()),
            coverage: Some(coverage),
            strategy: Some(strategy.into()),
            percent,
            variants,
            ..ExperimentConfig::default()
        }],
    };
    let router = Router::new(config).expect("valid config");
    let experiment = router.experiment(name).expect("configured");
    // The mapping modelgate documents: rollout = round(coverage × 100), weights out of 1000.
    let fractions: Vec<f64> = match percent {
        Some(p) => vec![1.0 - p / 100.0, p / 100.0],
        None => {
            let sum: f64 = weights.iter().sum();
            weights.iter().map(|w| w / sum).collect()
        }
    };
    let peer_variants: Vec<(String, u32)> = fractions
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("v{i}"), (f * 1000.0).round() as u32))
        .collect();
    let engine = engine(name, (coverage * 100.0).round() as u32, &peer_variants);
    let mut assigned = 0;
    for _ in 0..10_000 {
        let key = rng.key();
        let context = Context {
            user_id: Some(key.clone()),
            ..Context::default()
        };
        let peer = engine.get_variant("flag", &context, &None);
        let ours = router.route(experiment, &key);
        assert_eq!(
            ours.in_experiment(),
            peer.feature_enabled,
            "{name}: key {key:?}"
        );
        if ours.in_experiment() {
            let variant = router
                .variant_name(ours.variant.expect("variant"))
                .expect("name");
            assert_eq!(&*variant, peer.name.as_str(), "{name}: key {key:?}");
            assigned += 1;
        }
    }
    assigned
}

#[test]
fn unleash_mode_matches_unleash_engine() {
    let mut rng = Rng(0x001e_a5e5_eed5);
    let mut assigned = 0;
    assigned += check("pricing", "ab", 1.0, &[0.5, 0.5], None, &mut rng);
    assigned += check("search-ranker", "ab", 0.5, &[0.2, 0.3, 0.5], None, &mut rng);
    assigned += check("odd-weights", "ab", 0.37, &[1.0, 1.0, 1.0], None, &mut rng);
    assigned += check(
        "colors",
        "ab",
        1.0,
        &[0.1, 0.15, 0.25, 0.2, 0.3],
        None,
        &mut rng,
    );
    assigned += check("canary", "canary", 0.9, &[0.0, 0.0], Some(10.0), &mut rng);
    assigned += check("nobody", "ab", 0.0, &[0.5, 0.5], None, &mut rng);
    assert!(
        assigned > 30_000,
        "the settings must assign many keys, got {assigned}"
    );
}
