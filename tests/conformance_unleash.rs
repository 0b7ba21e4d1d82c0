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
    peer_weights: &[u32],
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
    // The mapping modelgate documents: rollout = round(coverage × 100), and the weights an
    // Unleash server stores for this split (given by the caller, out of 1000).
    let peer_variants: Vec<(String, u32)> = peer_weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("v{i}"), w))
        .collect();
    let engine = engine(name, (coverage * 100.0).round() as u32, &peer_variants);
    same_as_engine(name, &router, &engine, rng)
}

/// Routes 10,000 random user ids through `router`'s experiment `name` and the engine's flag;
/// returns how many were assigned a variant.
fn same_as_engine(name: &str, router: &Router, engine: &EngineState, rng: &mut Rng) -> usize {
    let experiment = router.experiment(name).expect("configured");
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
    assigned += check(
        "pricing",
        "ab",
        1.0,
        &[0.5, 0.5],
        None,
        &[500, 500],
        &mut rng,
    );
    assigned += check(
        "search-ranker",
        "ab",
        0.5,
        &[0.2, 0.3, 0.5],
        None,
        &[200, 300, 500],
        &mut rng,
    );
    // Three equal ("variable") variants: Unleash's server stores 334, 333, 333.
    assigned += check(
        "odd-weights",
        "ab",
        0.37,
        &[1.0, 1.0, 1.0],
        None,
        &[334, 333, 333],
        &mut rng,
    );
    assigned += check(
        "seven",
        "ab",
        1.0,
        &[1.0; 7],
        None,
        &[143, 143, 143, 143, 143, 143, 142],
        &mut rng,
    );
    assigned += check(
        "colors",
        "ab",
        1.0,
        &[0.1, 0.15, 0.25, 0.2, 0.3],
        None,
        &[100, 150, 250, 200, 300],
        &mut rng,
    );
    // A canary's candidate is a fixed weight, the baseline the variable rest.
    assigned += check(
        "canary",
        "canary",
        0.9,
        &[0.0, 0.0],
        Some(10.0),
        &[900, 100],
        &mut rng,
    );
    assigned += check(
        "canary-rounding",
        "canary",
        1.0,
        &[0.0, 0.0],
        Some(33.35),
        &[666, 334],
        &mut rng,
    );
    assigned += check(
        "nobody",
        "ab",
        0.0,
        &[0.5, 0.5],
        None,
        &[500, 500],
        &mut rng,
    );
    assert!(
        assigned > 40_000,
        "the settings must assign many keys, got {assigned}"
    );
}

/// `canary` and `gradual` split the two variants in config order, whichever is the
/// candidate, as the Unleash flag with those variants in that order does.
#[test]
fn canary_and_gradual_keep_the_config_order_of_their_variants() {
    let mut rng = Rng(0x0de7_0c0d);
    let config = |strategy: &str| {
        let split = if strategy == "canary" {
            "percent = 30"
        } else {
            "schedule = [{ at = \"2020-01-01T00:00:00Z\", percent = 30 }]"
        };
        format!(
            "[[experiments]]\nname = \"flag\"\nsalt = \"s-grad\"\nhash = \"unleash\"\n\
             strategy = \"{strategy}\"\ncandidate = \"v0\"\n{split}\n\
             [[experiments.variants]]\nname = \"v0\"\n\
             [[experiments.variants]]\nname = \"v1\"\n"
        )
    };
    let peer = engine(
        "s-grad",
        100,
        &[("v0".to_owned(), 300), ("v1".to_owned(), 700)],
    );
    for strategy in ["canary", "gradual"] {
        let router = Router::from_toml(&config(strategy)).expect("valid config");
        let assigned = same_as_engine("flag", &router, &peer, &mut rng);
        assert_eq!(assigned, 10_000, "{strategy}: everyone is in the flag");
    }
}
