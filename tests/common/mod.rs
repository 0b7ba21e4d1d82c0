//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The Python interpreter that has the oracles installed (`scripts/test` sets it up).
pub fn oracle_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MODELGATE_PYTHON") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        local.exists(),
        "the Python oracles are not installed: run `bash scripts/test` (it creates .venv), or set MODELGATE_PYTHON"
    );
    local
}

/// One experiment `elec` serving the variant `production` to everyone, with a `candidate`
/// variant for rollouts: what the lifecycle tests start from.
pub const ELEC_EXPERIMENTS: &str = r#"
[[experiments]]
name = "elec"
strategy = "immediate"
target = "production"
[[experiments.variants]]
name = "production"
[[experiments.variants]]
name = "candidate"
"#;

/// Elec2 rows are half an hour apart: one unit of its `t` column in ms.
pub const ELEC2_HALF_HOUR_MS: i64 = 1_800_000;

/// A small deterministic generator (SplitMix64) for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A key like real ids: mostly ASCII, sometimes with accents, CJK or emoji.
    pub fn key(&mut self) -> String {
        const ASCII: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_@.:";
        const OTHER: &[char] = &[
            'é',
            'ü',
            'ß',
            'ø',
            '中',
            '文',
            'ж',
            '😀',
            '🚀',
            '\u{10FFFF}',
            ' ',
        ];
        let len = 1 + self.below(30) as usize;
        let exotic = self.below(10) == 0;
        (0..len)
            .map(|_| {
                if exotic && self.below(4) == 0 {
                    OTHER[self.below(OTHER.len() as u64) as usize]
                } else {
                    ASCII[self.below(ASCII.len() as u64) as usize] as char
                }
            })
            .collect()
    }
}

/// Upper-tail p-value of a chi-square statistic.
pub fn chi_square_p(statistic: f64, degrees_of_freedom: f64) -> f64 {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    ChiSquared::new(degrees_of_freedom)
        .expect("degrees of freedom > 0")
        .sf(statistic)
}

/// A Python oracle script from `tests/oracle/`, spoken to in JSON lines: one request per
/// line on its stdin, one answer per line on its stdout.
pub struct Oracle {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl Oracle {
    /// Starts `tests/oracle/{script}` with the oracle interpreter.
    pub fn start(script: &str) -> Self {
        use std::process::{Command, Stdio};
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/oracle")
            .join(script);
        let mut child = Command::new(oracle_python())
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the oracle {}: {e}", path.display()));
        let input = child.stdin.take().expect("stdin");
        let output = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Oracle {
            child,
            input,
            output,
        }
    }

    /// Sends one request and reads its answer.
    pub fn ask(&mut self, case: &serde_json::Value) -> serde_json::Value {
        use std::io::{BufRead, Write};
        writeln!(self.input, "{case}").expect("write to the oracle");
        self.input.flush().expect("flush");
        let mut line = String::new();
        self.output.read_line(&mut line).expect("read the oracle");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("oracle answered {line:?}: {e}"))
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The two-variant experiment most agent tests use: `ranker` with `control` (model `r@1`)
/// and `candidate` (model `r@2`), equal weights.
pub const RANKER_CONFIG: &str = r#"
[[experiments]]
name = "ranker"
[[experiments.variants]]
name = "control"
model = "r@1"
[[experiments.variants]]
name = "candidate"
model = "r@2"
"#;

/// A fresh directory under the system's temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `modelgate-{tag}-{pid}-{nanos}`: unique per test and run.
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("modelgate-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
