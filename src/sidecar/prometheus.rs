//! `GET /metrics`: the sidecar's state in the OpenMetrics text format (prometheus-client).
//!
//! Series (labels `experiment`, `variant`):
//! `modelgate_requests_total`, `modelgate_errors_total`, `modelgate_latency_seconds`
//! (gauge per `quantile` 0.5, 0.9, 0.99, 0.999), `modelgate_outcome_mean`,
//! `modelgate_outcome_count_total`, `modelgate_binary_success_rate`,
//! `modelgate_predictions_total`; and the ingest counters `modelgate_reports_accepted_total`,
//! `modelgate_reports_duplicate_total`, `modelgate_reports_rejected_total{reason}`; and,
//! with a lifecycle, the latest drift scores of the production variant's features against
//! the production model's reference: `modelgate_drift_ks`, `modelgate_drift_ks_error_bound`,
//! `modelgate_drift_psi` and `modelgate_drift_detected` (labels `model`, `feature`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::lifecycle::triggers::FeatureDriftEvidence;
use super::server::IngestSummary;
use super::store::VariantTotal;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

fn labels(t: &VariantTotal) -> Labels {
    vec![
        ("experiment".to_owned(), t.experiment.clone()),
        ("variant".to_owned(), t.variant.clone()),
    ]
}

/// Renders the exposition text.
///
/// # Errors
/// Only if formatting fails.
pub fn render(
    ingest: &IngestSummary,
    totals: &[VariantTotal],
    model: &str,
    drift: &[FeatureDriftEvidence],
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("modelgate");

    let accepted: Counter = Counter::default();
    accepted.inc_by(ingest.accepted);
    registry.register("reports_accepted", "Reports accepted since start", accepted);
    let duplicates: Counter = Counter::default();
    duplicates.inc_by(ingest.duplicates);
    registry.register(
        "reports_duplicate",
        "Duplicate reports acknowledged and not counted again, since start",
        duplicates,
    );
    let rejected = Family::<Labels, Counter>::default();
    for (reason, n) in &ingest.rejected {
        rejected
            .get_or_create(&vec![("reason".to_owned(), reason.clone())])
            .inc_by(*n);
    }
    registry.register(
        "reports_rejected",
        "Reports rejected, by reason, since start",
        rejected,
    );

    let requests = Family::<Labels, Counter>::default();
    let errors = Family::<Labels, Counter>::default();
    let outcome_count = Family::<Labels, Counter>::default();
    let predictions = Family::<Labels, Counter>::default();
    let latency = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let outcome_mean = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let success_rate = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for t in totals {
        let l = labels(t);
        let m = &t.metrics;
        requests.get_or_create(&l).inc_by(m.requests);
        errors.get_or_create(&l).inc_by(m.errors.total());
        outcome_count.get_or_create(&l).inc_by(m.outcome.count);
        predictions
            .get_or_create(&l)
            .inc_by(m.predictions.as_ref().map_or(0, |p| p.count()));
        for q in [0.5, 0.9, 0.99, 0.999] {
            if let Some(nanos) = m.latency.quantile(q) {
                let mut ql = l.clone();
                ql.push(("quantile".to_owned(), q.to_string()));
                latency.get_or_create(&ql).set(nanos / 1e9);
            }
        }
        if m.outcome.count > 0 {
            outcome_mean.get_or_create(&l).set(m.outcome.mean);
        }
        if m.binary.trials > 0 {
            success_rate
                .get_or_create(&l)
                .set(m.binary.successes as f64 / m.binary.trials as f64);
        }
    }
    registry.register("requests", "Calls recorded by agents", requests);
    registry.register("errors", "Failed calls recorded by agents", errors);
    registry.register(
        "outcome_count",
        "Continuous outcomes recorded",
        outcome_count,
    );
    registry.register("predictions", "Predictions recorded", predictions);
    registry.register("latency_seconds", "Call latency quantiles", latency);
    registry.register(
        "outcome_mean",
        "Mean of the continuous outcome",
        outcome_mean,
    );
    registry.register(
        "binary_success_rate",
        "Successes over trials of the binary outcome",
        success_rate,
    );

    let ks = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let ks_bound = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let psi = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let detected = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for d in drift {
        let l = vec![
            ("model".to_owned(), model.to_owned()),
            ("feature".to_owned(), d.feature.clone()),
        ];
        if let Some(v) = d.ks {
            ks.get_or_create(&l).set(v);
        }
        if let Some(v) = d.ks_error_bound {
            ks_bound.get_or_create(&l).set(v);
        }
        psi.get_or_create(&l).set(d.psi);
        detected
            .get_or_create(&l)
            .set(if d.verdict == crate::drift::Verdict::Drift {
                1.0
            } else {
                0.0
            });
    }
    registry.register(
        "drift_ks",
        "Latest KS D of a feature against the reference",
        ks,
    );
    registry.register(
        "drift_ks_error_bound",
        "Error bound of the latest KS D (from the sketches)",
        ks_bound,
    );
    registry.register(
        "drift_psi",
        "Latest PSI of a feature against the reference",
        psi,
    );
    registry.register(
        "drift_detected",
        "1 when the latest verdict on a feature is drift",
        detected,
    );

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
