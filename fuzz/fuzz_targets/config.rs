//! Arbitrary bytes as an experiments config: parsing and compiling return a value or an
//! error, never panic; a config that compiles routes keys without panicking, and its buckets
//! stay in [0, 1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::route::{Router, RouterConfig};

fuzz_target!(|data: &[u8]| {
    // The last bytes (after a NUL) are the key to route.
    let (config, key) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"user-1"[..]),
    };
    let Ok(text) = std::str::from_utf8(config) else { return };
    let Ok(parsed) = RouterConfig::from_toml(text) else { return };
    let Ok(router) = Router::new(parsed) else { return };
    let key = String::from_utf8_lossy(key);
    router.route_all(&key, |experiment, assignment| {
        assert!((0.0..1.0).contains(&assignment.bucket));
        if let Some(v) = assignment.variant {
            assert!(experiment.variant(v).is_some());
        }
    });
});
