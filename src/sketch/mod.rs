//! Streaming, mergeable sketches of features and predictions (being built).
