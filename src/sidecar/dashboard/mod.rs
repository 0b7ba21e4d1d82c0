//! The sidecar's dashboard: a few pages served by `modelgate serve` at `/`, on the same
//! port as the admin API, for people who would rather look than read.
//!
//! * **Overview**: the production model (version, since when, by which run), the traffic
//!   split, the agents reporting, open alerts.
//! * **Drift**: per feature KS (with its error bar) and PSI over time, the verdict
//!   thresholds as lines, the reference window named; a feature's reference and current
//!   distributions (CDF or shares) from the sketches.
//! * **Experiments**: per variant requests, error rate, latency p50/p99, the primary metric
//!   with its always-valid interval over time; the rollout as a timeline with its guardrail
//!   checks; SRM status.
//! * **Runs**, **Reviews** (approve or reject with a reason) and the **Audit log** (filterable,
//!   with the alias history).
//!
//! The page, its script and its styles are compiled into the binary ([`asset`]); charts are
//! SVG drawn by the page's own script; nothing is fetched from anywhere else. The pages
//! read the same JSON admin API as the CLI ([`data`] adds the views it lacked: drift over
//! time, one feature's distributions, an experiment's primary metric over time).
//!
//! **Tokens.** Reading needs the admin token unless the sidecar config sets
//! `dashboard_read_only = true`. Write actions always need it: the page asks for it once,
//! keeps it in the tab's `sessionStorage` and sends it as an `Authorization: Bearer`
//! header, never in a URL or a cookie (so a cross-site form cannot act with it). The pages
//! are served with a strict content security policy (same-origin scripts, styles and
//! requests only; no inline script; no framing).

pub mod data;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("assets/index.html"),
};

const ASSETS: [(&str, Asset); 4] = [
    ("index.html", INDEX),
    (
        "app.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("assets/app.js"),
        },
    ),
    (
        "charts.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("assets/charts.js"),
        },
    ),
    (
        "style.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("assets/style.css"),
        },
    ),
];

/// The embedded file called `name` (`index.html`, `app.js`, `charts.js`, `style.css`).
#[must_use]
pub fn asset(name: &str) -> Option<Asset> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// Same-origin everything, no inline script, no framing, no plugins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn respond(asset: Asset) -> Response {
    let mut response = (StatusCode::OK, asset.body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the dashboard page.
pub async fn index() -> Response {
    respond(INDEX)
}

/// `GET /dashboard/{file}`: the page's script and styles; 404 for any other name.
pub async fn file(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match asset(&name) {
        Some(a) => respond(a),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        for name in ["app.js", "charts.js", "style.css"] {
            assert!(
                INDEX.body.contains(&format!("/dashboard/{name}")),
                "index.html does not load {name}"
            );
            assert!(asset(name).is_some_and(|a| !a.body.is_empty()), "{name}");
        }
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("").is_none());
    }

    #[test]
    fn no_inline_script_and_no_remote_url() {
        // The content security policy forbids inline script; the page must not need it.
        assert!(!INDEX.body.contains("<script>"), "inline script");
        assert!(!INDEX.body.contains("onclick="), "inline handler");
        for (name, a) in ASSETS {
            for remote in ["http://", "https://", "//cdn"] {
                let hits: Vec<&str> = a
                    .body
                    .lines()
                    .filter(|l| l.contains(remote) && !l.contains("www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{name} refers to {remote}: {hits:?}");
            }
        }
    }
}
