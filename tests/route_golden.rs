//! Golden vectors for the native (`xxh3`) scheme: assignments must not change between versions
//! (a user's variant would silently change under a running experiment). The expected values
//! were produced by this crate when the native layout was fixed; a change here is a breaking
//! change of the assignment format, never a test to update casually.
//!
//! Each experiment exercises one path of the native router: an even split, unequal weights
//! over ten arms, partial coverage, a namespace, and a gradual ramp at a fixed time.

use std::sync::Arc;

use modelgate::route::{ManualClock, Router, RouterConfig};

const CONFIG: &str = r#"
[[experiments]]
name = "even"
[[experiments.variants]]
name = "a"
[[experiments.variants]]
name = "b"
[[experiments.variants]]
name = "c"

[[experiments]]
name = "ten"
salt = "ten-arms"
"#;

fn config() -> String {
    let mut text = String::from(CONFIG);
    for i in 0..10 {
        text.push_str(&format!(
            "[[experiments.variants]]\nname = \"v{i}\"\nweight = {}\n",
            1.0 + i as f64
        ));
    }
    text.push_str(
        r#"
[[experiments]]
name = "half"
coverage = 0.5
[[experiments.variants]]
name = "control"
weight = 0.7
[[experiments.variants]]
name = "treatment"
weight = 0.3

[[experiments]]
name = "spaced"
namespace = { name = "search", start = 0.25, end = 0.75 }
[[experiments.variants]]
name = "control"
weight = 0.5
[[experiments.variants]]
name = "candidate"
weight = 0.5

[[experiments]]
name = "ramp"
strategy = "gradual"
schedule = [
  { at = "2026-01-01T00:00:00Z", percent = 10.0 },
  { at = "2026-02-01T00:00:00Z", percent = 35.0 },
]
[[experiments.variants]]
name = "stable"
[[experiments.variants]]
name = "next"
"#,
    );
    text
}

/// 2026-01-15T00:00:00Z: the ramp is at its first step (10%).
const NOW_MS: i64 = 1_768_435_200_000;

fn router() -> Router {
    let config = RouterConfig::from_toml(&config()).expect("golden config parses");
    Router::with_clock(config, Arc::new(ManualClock::new(NOW_MS))).expect("golden config")
}

/// `experiment key -> variant (or -) and the bucket's bits`, one line per key.
fn lines(router: &Router, experiment: &str, keys: impl Iterator<Item = String>) -> Vec<String> {
    let id = router.experiment(experiment).expect("configured");
    keys.map(|key| {
        let a = router.route(id, &key);
        let variant = a.variant.map_or("-".to_string(), |v| {
            router.variant_name(v).expect("name").to_string()
        });
        format!("{experiment} {key} {variant} {:016x}", a.bucket.to_bits())
    })
    .collect()
}

/// FNV-1a 64 of the lines, as a compact digest of thousands of assignments.
fn digest(lines: &[String]) -> u64 {
    lines
        .iter()
        .flat_map(|l| l.bytes().chain([b'\n']))
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[test]
fn a_few_assignments_are_pinned_line_by_line() {
    let router = router();
    let keys = [
        "user-1",
        "user-42",
        "qa-user-1",
        "",
        "ünïcödé-ключ",
        "0123456789abcdef0123",
    ];
    let mut got = Vec::new();
    for experiment in ["even", "ten", "half", "spaced", "ramp"] {
        got.extend(lines(
            &router,
            experiment,
            keys.iter().map(|k| k.to_string()),
        ));
    }
    let expected: Vec<&str> = EXPECTED_LINES.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        got,
        expected,
        "native assignments changed:\n{}",
        got.join("\n")
    );
}

#[test]
fn ten_thousand_assignments_per_experiment_keep_their_digest() {
    let router = router();
    for (experiment, expected) in EXPECTED_DIGESTS {
        let got = digest(&lines(
            &router,
            experiment,
            (0..10_000u64).map(|i| format!("user-{:016}", i * 7_919 + 13)),
        ));
        assert_eq!(got, *expected, "{experiment}: digest {got:#018x}");
    }
}

const EXPECTED_LINES: &str = "
even user-1 c 3fd1ced5473e4fa4
even user-42 c 3fcec46d351fdb38
even qa-user-1 b 3fb55efe4898ee68
even  a 3fe0dbe2d7aaddc3
even ünïcödé-ключ a 3fe92bc83c963ad9
even 0123456789abcdef0123 c 3fbfe278d127e9e8
ten user-1 v9 3fde1ffe0d601c82
ten user-42 v5 3fdf16f5d360f476
ten qa-user-1 v3 3febd58f02ac1e83
ten  v2 3fea9d66422c3e44
ten ünïcödé-ключ v5 3fdef8df4c8351c2
ten 0123456789abcdef0123 v8 3feced439f9fbd4d
half user-1 - 3fc68b1de938cbdc
half user-42 treatment 3fdfdd3fbc9e7b30
half qa-user-1 control 3fd13a2de15d76b0
half  treatment 3fd23efe1a42c2be
half ünïcödé-ключ treatment 3fea3c08e36710e3
half 0123456789abcdef0123 control 3fe7ffc4dc57534e
spaced user-1 control 3fd02a1e1e1583dc
spaced user-42 candidate 3fe3882f8f524bc2
spaced qa-user-1 control 3fc3668dfb246434
spaced  control 3fd70b62a6ce7986
spaced ünïcödé-ключ - 3fe7531e5bf84567
spaced 0123456789abcdef0123 - 3feea62fd814d014
ramp user-1 stable 3fe0424d35d0bab6
ramp user-42 stable 3fcae547ea9d9e24
ramp qa-user-1 stable 3fcb5ddc61cbf218
ramp  stable 3fd6609c0334912a
ramp ünïcödé-ключ stable 3f967bc37d65ec40
ramp 0123456789abcdef0123 stable 3fe7a57a0f0f1b39
";

const EXPECTED_DIGESTS: &[(&str, u64)] = &[
    ("even", 0xae3a_897b_e917_9d88),
    ("ten", 0x4eec_c800_008d_96cb),
    ("half", 0x0a72_3cf9_beb4_4c1d),
    ("spaced", 0xa56c_081b_6a6b_6a3f),
    ("ramp", 0xce41_cb2b_8d71_6f68),
];
