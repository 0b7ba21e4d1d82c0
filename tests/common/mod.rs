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
