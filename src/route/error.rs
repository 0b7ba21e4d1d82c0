//! Errors of the routing module.

/// What is wrong with an experiments config. Messages name the experiment and the field, and
/// say what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid TOML, or does not match the schema.
    #[error("cannot parse the experiments config: {message}")]
    Parse {
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field has a value that is not allowed.
    #[error("experiment `{experiment}`, field `{field}`: {reason}")]
    InvalidField {
        /// Experiment name (or its position when it has none).
        experiment: String,
        /// The field, with its path inside the experiment.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// Two experiments share a name.
    #[error("experiment `{experiment}` is defined twice: names must be unique")]
    DuplicateExperiment {
        /// The repeated name.
        experiment: String,
    },
    /// Two experiments in one namespace have overlapping ranges.
    #[error(
        "experiments `{first}` and `{second}` overlap in namespace `{namespace}`: ranges in one namespace must be disjoint"
    )]
    NamespaceOverlap {
        /// Namespace name.
        namespace: String,
        /// One experiment.
        first: String,
        /// The other experiment.
        second: String,
    },
    /// The component that uses the config refused it (for example: more variants than an
    /// agent keeps models and metrics for).
    #[error("config refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// The router has seen more distinct experiment or variant names than it keeps stable ids
    /// for.
    #[error("too many distinct {what} names over this router's lifetime (limit {limit})")]
    TooManyNames {
        /// `experiment` or `variant`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

impl ConfigError {
    pub(crate) fn field(
        experiment: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::InvalidField {
            experiment: experiment.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
