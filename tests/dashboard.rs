//! The dashboard in a real browser: a sidecar on loopback with a store filled by a short
//! real scenario (a first model trained on Elec2, an agent reporting a year-later week
//! through its reporter so that the Victorian prices drift, a drift alert, a run waiting
//! for review), driven through headless Chromium over WebDriver.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); the test
//! fails with the install hint when chromedriver is missing. `CHROMEDRIVER` and `CHROMIUM`
//! override the binaries. Screenshots of every page go to
//! `target/dashboard-screenshots/` for people to look at.
#![cfg(feature = "sidecar")]

mod common;
use common::{ELEC_EXPERIMENTS, ELEC2_HALF_HOUR_MS as HALF_HOUR_MS};

use common::TempDir;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate::agent::{Agent, Feature, FeatureKind, FeatureValue, Outcome};
use modelgate::artifact::{ArtifactLoader, ModelArtifact};
use modelgate::metrics::ErrorKind;
use modelgate::reporter::{Reporter, ReporterConfig};
use modelgate::route::{ManualClock, RouterConfig};
use modelgate::sidecar::config::SidecarConfig;
use modelgate::sidecar::lifecycle::triggers::TriggerKind;
use modelgate::sidecar::server::{self, RunningSidecar};
use thirtyfour::prelude::*;

const AGENT_TOKEN: &str = "agent-token-dashboard-0001";
const ADMIN_TOKEN: &str = "admin-token-dashboard-0001";
const WRONG_TOKEN: &str = "admin-token-dashboard-WRONG";
const DAY_MS: i64 = 86_400_000;
const FEATURES: [&str; 5] = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"];
const WAIT: Duration = Duration::from_secs(20);

// ---- chromedriver --------------------------------------------------------------------

/// A chromedriver child on a port it chose itself; shut down (with its browsers) on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let mut child = Command::new(&bin)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver `{bin}`: {e}. Install it with \
                     `apt-get install -y chromium chromium-driver` (Debian), or set CHROMEDRIVER \
                     to its path; this test needs a real browser and does not skip"
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads until the port line, then keeps draining so chromedriver never blocks.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.split("started successfully on port ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port.trim().trim_end_matches('.').parse::<u16>().ok());
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver `{bin}` did not report its port within 20 s: {other:?}");
            }
        };
        ChromeDriver { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `/shutdown` closes every session and its Chromium; a plain kill would orphan them.
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let _ = s.read(&mut [0u8; 256]);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn capabilities(
    profile: &Path,
    width: u32,
    height: u32,
) -> WebDriverResult<thirtyfour::ChromeCapabilities> {
    let mut c = DesiredCapabilities::chrome();
    c.set_binary(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))?;
    for arg in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--log-level=3",
    ] {
        c.add_arg(arg)?;
    }
    c.add_arg(&format!("--window-size={width},{height}"))?;
    c.add_arg(&format!("--user-data-dir={}", profile.display()))?;
    Ok(c)
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// Waits (bounded) until `css` matches at least one element, and returns them all.
/// Types `token` into the page's admin-token field and presses "Use".
async fn enter_token(driver: &WebDriver, token: &str) -> WebDriverResult<()> {
    driver.find(By::Id("token")).await?.send_keys(token).await?;
    driver.find(By::Id("token-use")).await?.click().await
}

async fn wait_for(driver: &WebDriver, css: &str) -> WebDriverResult<Vec<WebElement>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = driver.find_all(By::Css(css)).await?;
        if !found.is_empty() {
            return Ok(found);
        }
        if Instant::now() > deadline {
            let page = driver.source().await.unwrap_or_default();
            panic!(
                "nothing matched `{css}` within {WAIT:?}; page:\n{}",
                &page[..page.len().min(4000)]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Goes to a page and waits until it has rendered (the view names the page and is idle).
async fn open(driver: &WebDriver, base: &str, page: &str) -> WebDriverResult<()> {
    driver.goto(format!("{base}/#{page}")).await?;
    // A hash change on the same document does not reload, so also trigger the router.
    driver
        .execute(
            "window.dispatchEvent(new HashChangeEvent('hashchange'));",
            vec![],
        )
        .await?;
    wait_for(
        driver,
        &format!(
            "main[data-page=\"{}\"]:not([aria-busy])",
            page.split('?').next().unwrap_or(page)
        ),
    )
    .await?;
    Ok(())
}

async fn shoot(driver: &WebDriver, name: &str) -> WebDriverResult<()> {
    let path = screenshot_dir().join(format!("{name}.png"));
    // The whole page, not just the first screen: grow the window to the document's height.
    let height = driver
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await?
        .json()
        .as_u64()
        .unwrap_or(800)
        .clamp(400, 6000);
    let rect = driver.get_window_rect().await?;
    driver
        .set_window_rect(0, 0, rect.width as u32, height as u32 + 140)
        .await?;
    driver.screenshot(&path).await?;
    driver
        .set_window_rect(0, 0, rect.width as u32, rect.height as u32)
        .await?;
    let bytes = std::fs::read(&path).expect("screenshot written");
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    Ok(())
}

// ---- the scenario --------------------------------------------------------------------

/// Everything the scenario keeps alive.
struct Scenario {
    _dir: TempDir,
    sidecar: RunningSidecar,
    reporter: Option<Reporter>,
    agent: Option<Arc<Agent<ModelArtifact>>>,
}

fn sidecar_config(dir: &Path, clock: Arc<ManualClock>, read_only: bool) -> SidecarConfig {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv");
    let mut config =
        SidecarConfig::new(&dir.join("modelgate.db"), AGENT_TOKEN, ADMIN_TOKEN).expect("config");
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.experiments = RouterConfig::from_toml(ELEC_EXPERIMENTS).expect("experiments");
    config.clock = clock;
    config.dashboard_read_only = read_only;
    config.lifecycle = Some(
        toml::from_str(&format!(
            r#"
model = "elec"
experiment = "elec"
data = "{}"
timestamp_column = "t"
timestamp_unit_ms = {HALF_HOUR_MS}
features = {FEATURES:?}
label = "label"
min_improvement = 10.0
training_window = 6000
artifacts = "{}"
[triggers]
schedule = ""
volume = 1000000
check_interval_s = 3600
min_drift_rows = 300
drift_window_s = 86400
"#,
            data.display(),
            dir.join("models").display()
        ))
        .expect("lifecycle config"),
    );
    config
}

fn admin() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

/// Builds the scenario (blocking: training, reports, a retrain); runs on a plain thread.
fn scenario() -> Scenario {
    let dir = TempDir::new("dashboard");
    let start = 8000 * HALF_HOUR_MS;
    let clock = Arc::new(ManualClock::new(start));
    let sidecar = server::spawn(&sidecar_config(&dir.0, clock.clone(), true)).expect("sidecar");
    let url = sidecar.url();
    let lifecycle = sidecar.lifecycle().expect("lifecycle").clone();
    // Run 1: the first model, promoted.
    let first = lifecycle.tick().expect("tick").expect("a first run");
    assert_eq!(first.state, "succeeded", "{first:?}");

    // An agent that reports, through its reporter, one day of requests per round: the
    // first day from the training period, then days from a year later (drifted prices).
    let agent = Arc::new(
        Agent::<ModelArtifact>::builder()
            .experiments_toml(ELEC_EXPERIMENTS)
            .expect("experiments")
            .features(
                FEATURES
                    .iter()
                    .map(|f| Feature {
                        name: (*f).to_string(),
                        kind: FeatureKind::Numeric,
                    })
                    .collect(),
            )
            .clock(clock.clone())
            .build()
            .expect("agent"),
    );
    let mut rc = ReporterConfig::new(&url, AGENT_TOKEN);
    rc.agent_id = Some("serving-1".into());
    rc.interval = Duration::from_secs(3600);
    rc.control_interval = Duration::from_secs(3600);
    let reporter = Reporter::spawn(&agent, rc, Some(Arc::new(ArtifactLoader))).expect("reporter");
    reporter
        .sync_control(Duration::from_secs(10))
        .expect("control");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv");
    let text = std::fs::read_to_string(data).expect("elec2");
    let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
    let columns: Vec<usize> = FEATURES
        .iter()
        .map(|f| header.iter().position(|h| h == f).expect("column"))
        .collect();
    let label = header.iter().position(|h| *h == "label").expect("label");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let elec = agent.experiment("elec").expect("elec");
    for (day, first_row) in [(0_i64, 7000_usize), (1, 30_000), (2, 31_000), (3, 32_000)] {
        clock.set(start + day * DAY_MS + HALF_HOUR_MS);
        for (i, line) in rows.iter().enumerate().skip(first_row).take(500) {
            let fields: Vec<&str> = line.split(',').collect();
            let row: Vec<FeatureValue<'_>> = columns
                .iter()
                .map(|&c| FeatureValue::Number(fields[c].parse().expect("number")))
                .collect();
            let decision = agent.route(elec, &format!("user-{}", i % 97));
            agent.record_features(&decision, &row);
            let failed = i % 50 == 0;
            agent.record(
                &decision,
                Duration::from_micros(800 + (i as u64 % 40) * 25),
                if failed {
                    Err(ErrorKind::Timeout)
                } else {
                    Ok(())
                },
            );
            agent.record_outcome_for(
                &decision,
                Outcome::Binary(fields[label] == "1" || i % 3 == 0),
            );
        }
        clock.set(start + (day + 1) * DAY_MS - 1000);
        reporter.flush(Duration::from_secs(10)).expect("flush");
    }
    // The drift check: vicprice moved, so a drift alert is raised and audited.
    let firings = lifecycle.check_triggers().expect("triggers");
    assert!(
        firings.iter().any(|f| f.kind == TriggerKind::Drift),
        "the scenario must drift: {firings:?}"
    );
    // Run 2 on more data: under the 1000% bar, so it waits for a person.
    clock.set(9000 * HALF_HOUR_MS);
    let r = admin()
        .post(format!("{url}/v1/retrain"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"reason": "a week of drift"}))
        .send()
        .expect("retrain");
    assert_eq!(r.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = get_json(&url, "/v1/runs/2", Some(ADMIN_TOKEN));
        if run["state"] != "running" && !run["state"].is_null() {
            assert_eq!(run["state"], "pending_review", "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "run 2 did not finish: {run}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Scenario {
        _dir: dir,
        sidecar,
        reporter: Some(reporter),
        agent: Some(agent),
    }
}

fn get_json(url: &str, path: &str, token: Option<&str>) -> serde_json::Value {
    let mut request = admin().get(format!("{url}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().expect("GET");
    response.json().unwrap_or(serde_json::Value::Null)
}

/// Runs blocking work (the scenario, reqwest's blocking client) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = std::thread::spawn(f);
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .expect("join")
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

// ---- the test ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_scenario_and_approves_with_the_token() -> WebDriverResult<()> {
    let mut scenario = blocking(scenario).await;
    let base = scenario.sidecar.url();
    // thirtyfour's HTTP client is reqwest with rustls, which needs a crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chromedriver = ChromeDriver::start(); // before the driver: dropped after it
    let profile = TempDir::new("dashboard-chromium");
    let driver = WebDriver::new(chromedriver.url(), capabilities(&profile.0, 1280, 800)?).await?;

    // Overview: the experiment, its split and the agent; the drift alert and the review.
    open(&driver, &base, "overview").await?;
    wait_for(&driver, "#agents-table tr[data-agent=\"serving-1\"]").await?;
    wait_for(
        &driver,
        "table.split tr[data-experiment=\"elec\"][data-variant=\"production\"]",
    )
    .await?;
    let agents = driver.find(By::Css("#agents h2")).await?.text().await?;
    assert_eq!(agents, "Agents reporting: 1");
    let production = driver.find(By::Id("production")).await?.text().await?;
    assert!(production.contains("elec@1"), "{production}");
    wait_for(&driver, "#alerts li[data-alert=\"drift\"]").await?;
    wait_for(&driver, "#alerts li[data-alert=\"review\"]").await?;
    shoot(&driver, "overview").await?;

    // Drift: the drifting feature's KS points above the threshold, with the line drawn.
    open(&driver, &base, "drift").await?;
    let above = wait_for(
        &driver,
        "article[data-feature=\"vicprice\"] [data-metric=\"ks\"][data-above-threshold=\"true\"]",
    )
    .await?;
    assert!(
        above.len() >= 2,
        "days after the shift drift: {}",
        above.len()
    );
    for point in &above {
        let value: f64 = point
            .attr("data-value")
            .await?
            .unwrap_or_default()
            .parse()
            .unwrap_or(0.0);
        assert!(
            value >= 0.1,
            "a point marked above the threshold is below it: {value}"
        );
        assert_eq!(point.attr("data-verdict").await?.as_deref(), Some("drift"));
    }
    let below = driver
        .find_all(By::Css(
            "article[data-feature=\"vicprice\"] [data-metric=\"ks\"][data-above-threshold=\"false\"]",
        ))
        .await?;
    assert_eq!(below.len(), 1, "the training-period day does not drift");
    let threshold = driver
        .find(By::Css(
            "article[data-feature=\"vicprice\"] .threshold[data-label=\"min effect\"]",
        ))
        .await?;
    assert_eq!(
        threshold.attr("data-threshold").await?.as_deref(),
        Some("0.1")
    );
    let reference = driver.find(By::Id("reference")).await?.text().await?;
    assert!(reference.contains("elec@1"), "{reference}");
    // Clicking the feature shows its reference and current CDFs.
    driver
        .find(By::Css(
            "article[data-feature=\"vicprice\"] button[data-feature=\"vicprice\"]",
        ))
        .await?
        .click()
        .await?;
    let curves = wait_for(
        &driver,
        ".distribution[data-feature=\"vicprice\"] svg g.series",
    )
    .await?;
    assert_eq!(curves.len(), 2, "reference and current");
    for side in ["reference", "current"] {
        let line = driver
            .find(By::Css(format!(
                ".distribution[data-feature=\"vicprice\"] g.series[data-series=\"{side}\"] polyline.line"
            )))
            .await?;
        let points = line.attr("points").await?.unwrap_or_default();
        // At least a rise and a flat end (Elec2's early Victorian price is one value).
        assert!(
            points.split(' ').count() >= 3,
            "{side} CDF has points: {points}"
        );
    }
    shoot(&driver, "drift").await?;

    // Experiments: per variant totals, the primary metric over time, the rollout section.
    open(&driver, &base, "experiments").await?;
    let row = wait_for(
        &driver,
        "section[data-experiment=\"elec\"] tr[data-variant=\"production\"]",
    )
    .await?;
    let text = row[0].text().await?;
    assert!(text.contains("2000"), "2,000 requests reported: {text}");
    wait_for(&driver, "section[data-experiment=\"elec\"] svg .band").await?;
    wait_for(&driver, "#srm-status").await?;
    shoot(&driver, "experiments").await?;

    // Runs: both runs, with their steps.
    open(&driver, &base, "runs").await?;
    wait_for(
        &driver,
        "details[data-run=\"2\"][data-state=\"pending_review\"]",
    )
    .await?;
    wait_for(&driver, "details[data-run=\"1\"][data-state=\"succeeded\"]").await?;
    shoot(&driver, "runs").await?;

    // Reviews, with a wrong token: an error, and nothing changes.
    open(&driver, &base, "reviews").await?;
    wait_for(&driver, "form.review[data-run=\"2\"]").await?;
    shoot(&driver, "reviews").await?;
    enter_token(&driver, WRONG_TOKEN).await?;
    wait_for(
        &driver,
        "main[data-page=\"reviews\"]:not([aria-busy]) form.review[data-run=\"2\"]",
    )
    .await?;
    driver
        .find(By::Id("reason-2"))
        .await?
        .send_keys("looks right")
        .await?;
    driver
        .find(By::Css("form.review[data-run=\"2\"] button.approve"))
        .await?
        .click()
        .await?;
    let error = wait_for(&driver, "form.review[data-run=\"2\"] [data-error=\"401\"]").await?;
    assert!(error[0].text().await?.contains("refused"));
    let state = driver.find(By::Id("token-state")).await?.text().await?;
    assert_eq!(state, "token refused");
    shoot(&driver, "reviews-wrong-token").await?;
    let url = base.clone();
    let (run, approvals) = blocking(move || {
        (
            get_json(&url, "/v1/runs/2", Some(ADMIN_TOKEN)),
            get_json(&url, "/v1/audit?kind=run.approve", Some(ADMIN_TOKEN)),
        )
    })
    .await;
    assert_eq!(
        run["state"], "pending_review",
        "a wrong token changes nothing"
    );
    assert_eq!(
        approvals["audit"].as_array().map(Vec::len),
        Some(0),
        "{approvals}"
    );

    // The right token: Approve with a reason promotes the candidate and audits it.
    enter_token(&driver, ADMIN_TOKEN).await?;
    wait_for(
        &driver,
        "main[data-page=\"reviews\"]:not([aria-busy]) form.review[data-run=\"2\"]",
    )
    .await?;
    let reason = driver.find(By::Id("reason-2")).await?;
    reason.clear().await?;
    // Without a reason nothing is sent.
    driver
        .find(By::Css("form.review[data-run=\"2\"] button.approve"))
        .await?
        .click()
        .await?;
    wait_for(&driver, "form.review[data-run=\"2\"] .alert").await?;
    reason.send_keys("checked the holdout by hand").await?;
    driver
        .find(By::Css("form.review[data-run=\"2\"] button.approve"))
        .await?
        .click()
        .await?;
    // The default rollout is gradual: the approved run stays running while it rolls out.
    let outcome = wait_for(
        &driver,
        "form.review[data-run=\"2\"] [data-outcome=\"running\"]",
    )
    .await?;
    assert!(outcome[0].text().await?.contains("approved"));
    assert_eq!(
        driver.find(By::Id("token-state")).await?.text().await?,
        "token accepted"
    );
    shoot(&driver, "reviews-approved").await?;
    let url = base.clone();
    let (run, approvals, production) = blocking(move || {
        (
            get_json(&url, "/v1/runs/2", Some(ADMIN_TOKEN)),
            get_json(&url, "/v1/audit?kind=run.approve", Some(ADMIN_TOKEN)),
            get_json(&url, "/v1/lifecycle", Some(ADMIN_TOKEN)),
        )
    })
    .await;
    assert_eq!(run["state"], "running", "{run}");
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        steps.contains(&"approved") && steps.contains(&"rollout"),
        "{steps:?}"
    );
    let rows = approvals["audit"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{approvals}");
    assert_eq!(rows[0]["detail"]["reason"], "checked the holdout by hand");
    assert_eq!(rows[0]["detail"]["run_id"], 2);
    assert_eq!(production["rollout"]["reference"], "elec@2", "{production}");
    assert_eq!(
        production["production"]["reference"], "elec@1",
        "until the rollout ends"
    );

    // The rollout now shows on the experiments page as a timeline.
    open(&driver, &base, "experiments").await?;
    wait_for(
        &driver,
        "#rollout ol.timeline li[data-kind=\"rollout.start\"]",
    )
    .await?;
    let progress = driver.find(By::Css("#rollout dl")).await?.text().await?;
    assert!(progress.contains("elec@2: step 1 of 4 (5%)"), "{progress}");
    shoot(&driver, "experiments-rollout").await?;

    // The token never went into a URL or a cookie.
    let cookies = driver.get_all_cookies().await?;
    assert!(cookies.is_empty(), "{cookies:?}");
    assert!(!driver.current_url().await?.as_str().contains(ADMIN_TOKEN));

    // Audit log: newest first, filterable, with the alias history.
    open(&driver, &base, "audit").await?;
    let kinds = wait_for(&driver, "#audit-table tbody tr").await?;
    assert!(kinds.len() > 5);
    let ids: Vec<i64> = {
        let mut ids = Vec::new();
        for row in &kinds {
            ids.push(
                row.attr("data-id")
                    .await?
                    .unwrap_or_default()
                    .parse()
                    .unwrap_or(0),
            );
        }
        ids
    };
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    wait_for(&driver, "#alias-history tbody tr").await?;
    shoot(&driver, "audit").await?;
    open(&driver, &base, "audit?kind=run").await?;
    let filtered = wait_for(&driver, "#audit-table tbody tr").await?;
    for row in &filtered {
        let kind = row.attr("data-kind").await?.unwrap_or_default();
        assert!(kind.starts_with("run."), "{kind}");
    }

    // A narrow window: the overview still lays out (no horizontal page scroll).
    driver.set_window_rect(0, 0, 420, 900).await?;
    open(&driver, &base, "overview").await?;
    wait_for(&driver, "#agents-table").await?;
    let overflow = driver
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await?
        .json()
        .as_i64()
        .unwrap_or(i64::MAX);
    assert!(
        overflow <= 0,
        "the page scrolls sideways by {overflow} px at 420 px"
    );
    shoot(&driver, "overview-narrow").await?;

    driver.quit().await?;
    drop(chromedriver);
    let reporter = scenario.reporter.take();
    let agent = scenario.agent.take();
    blocking(move || {
        drop(reporter);
        drop(agent);
        drop(scenario);
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_only_viewing_the_page_asks_for_the_token() -> WebDriverResult<()> {
    let dir = TempDir::new("dashboard-token");
    let clock = Arc::new(ManualClock::new(8000 * HALF_HOUR_MS));
    let config = sidecar_config(&dir.0, clock, false);
    let sidecar = blocking(move || server::spawn(&config).expect("sidecar")).await;
    let base = sidecar.url();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chromedriver = ChromeDriver::start();
    let profile = TempDir::new("dashboard-chromium-token");
    let driver = WebDriver::new(chromedriver.url(), capabilities(&profile.0, 1280, 800)?).await?;

    open(&driver, &base, "overview").await?;
    let error = wait_for(&driver, "#auth-error").await?;
    assert!(error[0].text().await?.contains("needs the admin token"));
    shoot(&driver, "asks-for-token").await?;
    enter_token(&driver, ADMIN_TOKEN).await?;
    wait_for(
        &driver,
        "main[data-page=\"overview\"]:not([aria-busy]) #agents",
    )
    .await?;
    assert!(driver.find_all(By::Id("auth-error")).await?.is_empty());
    // The token survives a reload of the tab (sessionStorage), not a new session.
    driver.refresh().await?;
    wait_for(
        &driver,
        "main[data-page=\"overview\"]:not([aria-busy]) #agents",
    )
    .await?;

    driver.quit().await?;
    drop(chromedriver);
    blocking(move || drop(sidecar)).await;
    Ok(())
}
