//! A/B statistics (being built).
