//! Errors of the sketch module.

/// What went wrong building, merging or decoding a sketch or profile. Messages say what to
/// change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SketchError {
    /// The KLL parameter `k` is outside the supported range.
    #[error("k = {k} is not supported: use a k from 8 to 65535 (1024 is the default)")]
    InvalidK {
        /// The rejected value.
        k: u64,
    },
    /// The categorical limit is outside the supported range.
    #[error(
        "max_distinct = {max_distinct} is not supported: use 1 to {max} distinct values (256 is the default)"
    )]
    InvalidMaxDistinct {
        /// The rejected value.
        max_distinct: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// Two profiles of different kinds (numeric and categorical) cannot be merged.
    #[error(
        "cannot merge a {into} profile with a {from} profile: merge profiles of the same feature"
    )]
    KindMismatch {
        /// Kind of the profile merged into.
        into: &'static str,
        /// Kind of the profile merged from.
        from: &'static str,
    },
    /// The bytes do not start with the expected type tag.
    #[error("not an encoded {expected}: the first byte is {found:#04x}")]
    BadMagic {
        /// What the decoder expected.
        expected: &'static str,
        /// The byte found.
        found: u8,
    },
    /// The encoding has a version this build does not read.
    #[error(
        "{what} encoding version {found} is not supported: this build reads version {supported}"
    )]
    UnsupportedVersion {
        /// What was being decoded.
        what: &'static str,
        /// The version found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The input ended before the value did.
    #[error("the encoded {what} is truncated")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
    },
    /// The input decodes but describes an impossible sketch (hostile or corrupt bytes).
    #[error("the encoded {what} is invalid: {reason}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// The violated invariant.
        reason: &'static str,
    },
}
