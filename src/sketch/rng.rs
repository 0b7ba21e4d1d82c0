//! The sketches' own small seeded generator, so that compaction coin flips are reproducible.

/// SplitMix64 (Steele, Lea and Flood 2014): every 64-bit state is valid, so a decoded state
/// needs no validation, and 8 bytes of state travel with a sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting at `state` (any value).
    pub(crate) const fn new(state: u64) -> Self {
        SplitMix64 { state }
    }

    /// The current state, as encoded.
    pub(crate) const fn state(self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fair coin.
    pub(crate) fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}
