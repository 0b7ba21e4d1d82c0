//! The sidecar's notifications, against a real SMTP server and a real HTTP receiver on
//! 127.0.0.1 (both in this process).
#![cfg(feature = "sidecar")]

#[path = "common/smtp.rs"]
mod smtp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use modelgate::sidecar::notify::{
    Channel, Delivery, Notification, NotificationKind, Notifier, NotifyConfig, NotifyError,
    SmtpConfig, SmtpTls, WebhookConfig,
};
use serde_json::{Value, json};
use smtp::SmtpSink;

const USER_ENV: &str = "MODELGATE_NOTIFY_TEST_SMTP_USER";
const PASSWORD_ENV: &str = "MODELGATE_NOTIFY_TEST_SMTP_PASSWORD";
const TOKEN_ENV: &str = "MODELGATE_NOTIFY_TEST_WEBHOOK_TOKEN";
const UNSET_ENV: &str = "MODELGATE_NOTIFY_TEST_SURELY_UNSET";
const USER: &str = "notify-user";
const PASSWORD: &str = "pw-Zq8vT3-never-shown";
const TOKEN: &str = "tok-Xk2pR9-never-shown";
/// Long enough for a loaded 2-core machine; the tests finish far sooner.
const IDLE: Duration = Duration::from_secs(60);

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Runs first in every test, before any thread of the test starts: sets the environment
/// (once, so no test reads it while it changes) and captures the log of the whole binary.
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: inside `call_once`, which every test calls before doing anything else,
        // so no other thread of this process reads the environment meanwhile.
        unsafe {
            std::env::set_var(USER_ENV, USER);
            std::env::set_var(PASSWORD_ENV, PASSWORD);
            std::env::set_var(TOKEN_ENV, TOKEN);
            std::env::remove_var(UNSET_ENV);
            // Never send the test's own requests through a proxy.
            let no_proxy = match std::env::var("NO_PROXY") {
                Ok(v) if !v.is_empty() => format!("{v},127.0.0.1,localhost"),
                _ => "127.0.0.1,localhost".to_owned(),
            };
            std::env::set_var("NO_PROXY", &no_proxy);
            std::env::set_var("no_proxy", &no_proxy);
        }
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let _ = LOGS.set(Arc::clone(&buffer));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&buffer)))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged so far by every test of this binary.
fn logs() -> String {
    let buffer = LOGS.get().expect("setup() ran");
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn smtp_config(port: u16) -> SmtpConfig {
    let mut smtp = SmtpConfig::new(
        "127.0.0.1",
        SmtpTls::None,
        "modelgate <modelgate@example.com>",
        &["ops@example.com", "Second Admin <second@example.org>"],
    );
    smtp.port = Some(port);
    smtp.timeout_ms = 5_000;
    smtp
}

fn fast(config: NotifyConfig) -> NotifyConfig {
    NotifyConfig {
        retry_base_ms: 10,
        ..config
    }
}

fn recording_hook() -> (
    Arc<Mutex<Vec<Delivery>>>,
    modelgate::sidecar::notify::DeliveryHook,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let hook: modelgate::sidecar::notify::DeliveryHook =
        Arc::new(move |d: &Delivery| sink.lock().unwrap().push(d.clone()));
    (seen, hook)
}

// ---------------------------------------------------------------- a tiny HTTP receiver

#[derive(Debug)]
struct HttpRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

struct HttpSink {
    url: String,
    requests: Receiver<HttpRequest>,
}

/// Answers the n-th request with `statuses[n]` (200 once they run out). With `hold`, the
/// first answer waits until the test sends on (or drops) the other end.
fn http_sink(path: &str, statuses: Vec<u16>, hold: Option<Receiver<()>>) -> HttpSink {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let (tx, requests) = mpsc::channel();
    thread::spawn(move || {
        let mut hold = hold;
        for (n, conn) in listener.incoming().flatten().enumerate() {
            let Ok(request) = read_request(&conn) else {
                continue;
            };
            let _ = tx.send(request);
            if let Some(gate) = hold.take() {
                let _ = gate.recv();
            }
            let status = statuses.get(n).copied().unwrap_or(200);
            let body = if status == 200 { "ok" } else { "boom" };
            let mut conn = conn;
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.flush();
        }
    });
    HttpSink { url, requests }
}

fn read_request(conn: &std::net::TcpStream) -> std::io::Result<HttpRequest> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

fn of(deliveries: &[Delivery], channel: Channel) -> Vec<Delivery> {
    deliveries
        .iter()
        .filter(|d| d.channel == channel)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------- email

#[test]
fn email_reaches_a_real_smtp_server_with_credentials_from_the_environment() {
    setup();
    let sink = SmtpSink::start_with_auth(USER, PASSWORD);
    let mut smtp = smtp_config(sink.port);
    smtp.username_env = Some(USER_ENV.into());
    smtp.password_env = Some(PASSWORD_ENV.into());
    let (seen, hook) = recording_hook();
    let notifier = Notifier::with_hook(
        fast(NotifyConfig {
            smtp: Some(smtp),
            ..NotifyConfig::default()
        }),
        hook,
    )
    .unwrap();
    assert_eq!(notifier.channels(), [Channel::Email]);

    let id = notifier.notify(
        Notification::new(
            NotificationKind::ModelUpdate,
            "ranker@4 goes live in 10 minutes",
            "The candidate ranker@4 replaces ranker@3 after the grace period.",
        )
        .with_detail(json!({"model": "ranker", "from_version": 3, "to_version": 4})),
    );
    assert!(notifier.wait_idle(IDLE), "the notifier did not finish");

    let got = sink
        .recv(Duration::from_secs(5))
        .expect("the sink got the mail");
    assert_eq!(got.from, "modelgate@example.com");
    assert_eq!(got.to, ["ops@example.com", "second@example.org"]);
    assert_eq!(got.auth, Some((USER.to_owned(), PASSWORD.to_owned())));
    let raw = got.text();
    assert!(
        raw.contains("Subject: [modelgate] ranker@4 goes live in 10 minutes\r\n"),
        "{raw}"
    );
    assert!(raw.contains("Content-Type: text/plain"), "{raw}");
    let body = got.body();
    assert!(
        body.contains("The candidate ranker@4 replaces ranker@3 after the grace period."),
        "{body}"
    );
    assert!(body.contains("\"to_version\": 4"), "{body}");
    assert!(sink.try_recv().is_none(), "exactly one message");

    let deliveries = notifier.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = &deliveries[0];
    assert_eq!(d.id, id);
    assert_eq!(d.kind, NotificationKind::ModelUpdate);
    assert_eq!(d.subject, "ranker@4 goes live in 10 minutes");
    assert_eq!((d.channel, d.ok, d.attempts), (Channel::Email, true, 1));
    assert_eq!(d.error, None);
    assert!(d.at_ms > 1_600_000_000_000);
    // The hook saw the same rows, by the time wait_idle returned.
    assert_eq!(*seen.lock().unwrap(), deliveries);
}

#[test]
fn starttls_is_required_not_opportunistic() {
    setup();
    // A server that offers AUTH but no STARTTLS: the notifier must not fall back to plain
    // text, and so must never send the credentials.
    let sink = SmtpSink::start_with_auth(USER, PASSWORD);
    let mut smtp = smtp_config(sink.port);
    smtp.tls = SmtpTls::Starttls;
    smtp.username_env = Some(USER_ENV.into());
    smtp.password_env = Some(PASSWORD_ENV.into());
    let notifier = Notifier::new(fast(NotifyConfig {
        smtp: Some(smtp),
        attempts: 2,
        ..NotifyConfig::default()
    }))
    .unwrap();
    notifier.notify(Notification::new(
        NotificationKind::Promotion,
        "starttls-required-check",
        "x",
    ));
    assert!(notifier.wait_idle(IDLE));

    let deliveries = notifier.deliveries();
    let email = of(&deliveries, Channel::Email);
    assert_eq!(email.len(), 1, "{deliveries:?}");
    assert!(!email[0].ok);
    let error = email[0].error.as_deref().unwrap();
    assert!(error.to_ascii_lowercase().contains("starttls"), "{error}");
    assert_eq!(of(&deliveries, Channel::Log).len(), 1, "{deliveries:?}");
    assert!(sink.try_recv().is_none(), "nothing was sent in plain text");
    assert!(sink.auth_attempts().is_empty(), "credentials were sent");
}

// ---------------------------------------------------------------- webhook

#[test]
fn webhook_posts_slack_compatible_json_with_a_bearer_token() {
    setup();
    let http = http_sink("/hooks/modelgate", vec![], None);
    let mut webhook = WebhookConfig::new(&http.url);
    webhook.bearer_token_env = Some(TOKEN_ENV.into());
    let notifier = Notifier::new(fast(NotifyConfig {
        webhook: Some(webhook),
        ..NotifyConfig::default()
    }))
    .unwrap();
    assert_eq!(notifier.channels(), [Channel::Webhook]);

    let id = notifier.notify(
        Notification::new(
            NotificationKind::DriftAlert,
            "drift on price",
            "KS D = 0.41 on column price (p < 0.001).",
        )
        .with_detail(json!({"column": "price", "ks": 0.41, "verdict": "drift"})),
    );
    assert!(notifier.wait_idle(IDLE));

    let request = http
        .requests
        .recv_timeout(Duration::from_secs(5))
        .expect("the receiver got the POST");
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/modelgate");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        request
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{request:?}"
    );
    let body = request.json();
    assert_eq!(
        body["text"],
        "[modelgate] drift on price\nKS D = 0.41 on column price (p < 0.001)."
    );
    assert_eq!(body["kind"], "drift_alert");
    assert_eq!(body["subject"], "drift on price");
    assert_eq!(body["detail"]["column"], "price");
    assert_eq!(body["detail"]["ks"], 0.41);
    assert_eq!(body["id"], id.get());

    let deliveries = notifier.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(
        (
            deliveries[0].channel,
            deliveries[0].ok,
            deliveries[0].attempts
        ),
        (Channel::Webhook, true, 1)
    );
}

#[test]
fn webhook_answering_500_twice_then_200_is_delivered_on_the_third_attempt() {
    setup();
    let http = http_sink("/", vec![500, 500, 200], None);
    let notifier = Notifier::new(fast(NotifyConfig {
        webhook: Some(WebhookConfig::new(&http.url)),
        ..NotifyConfig::default()
    }))
    .unwrap();
    assert_eq!(notifier.config().attempts, 3, "the default");
    let id = notifier.notify(Notification::new(
        NotificationKind::RunFinished,
        "run 7 finished",
        "ok",
    ));
    assert!(notifier.wait_idle(IDLE));

    let deliveries = notifier.deliveries();
    assert_eq!(deliveries.len(), 1, "no log fallback: {deliveries:?}");
    let d = &deliveries[0];
    assert_eq!((d.channel, d.ok, d.attempts), (Channel::Webhook, true, 3));
    assert_eq!(d.error, None);

    let requests: Vec<HttpRequest> = http.requests.try_iter().collect();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.json()["id"], id.get(), "every retry carries the same id");
        assert_eq!(r.header("authorization"), None, "no token configured");
    }
}

#[test]
fn webhook_client_errors_are_not_retried() {
    setup();
    let http = http_sink("/", vec![404, 200], None);
    let notifier = Notifier::new(fast(NotifyConfig {
        webhook: Some(WebhookConfig::new(&http.url)),
        attempts: 5,
        ..NotifyConfig::default()
    }))
    .unwrap();
    notifier.notify(Notification::new(
        NotificationKind::Rollback,
        "rollback-404-check",
        "x",
    ));
    assert!(notifier.wait_idle(IDLE));

    let deliveries = notifier.deliveries();
    let webhook = of(&deliveries, Channel::Webhook);
    assert_eq!(webhook.len(), 1, "{deliveries:?}");
    assert_eq!((webhook[0].ok, webhook[0].attempts), (false, 1));
    assert_eq!(webhook[0].error.as_deref(), Some("HTTP 404: boom"));
    let log = of(&deliveries, Channel::Log);
    assert_eq!(log.len(), 1, "{deliveries:?}");
    assert_eq!(
        log[0].error.as_deref(),
        Some("webhook failed after 1 attempt: HTTP 404: boom")
    );
    assert_eq!(http.requests.try_iter().count(), 1);
}

// ---------------------------------------------------------------- failures and fallback

#[test]
fn unreachable_smtp_falls_back_to_the_log_while_the_webhook_still_delivers() {
    setup();
    let port = closed_port();
    let (release, hold) = mpsc::channel();
    let http = http_sink("/", vec![], Some(hold));
    let (seen, hook) = recording_hook();
    let notifier = Notifier::with_hook(
        fast(NotifyConfig {
            smtp: Some(smtp_config(port)),
            webhook: Some(WebhookConfig::new(&http.url)),
            ..NotifyConfig::default()
        }),
        hook,
    )
    .unwrap();
    assert_eq!(notifier.channels(), [Channel::Email, Channel::Webhook]);

    // The receiver holds its answer until told: `notify` must return regardless.
    let id = notifier.notify(
        Notification::new(
            NotificationKind::RunFailed,
            "unreachable-smtp-check: run 12 failed",
            "Training run 12 failed: out of memory.",
        )
        .with_detail(json!({"run": 12, "stage": "train"})),
    );
    let request = http
        .requests
        .recv_timeout(IDLE)
        .expect("the webhook request arrives while notify has long returned");
    assert_eq!(request.json()["kind"], "run_failed");
    assert!(
        !notifier.wait_idle(Duration::ZERO),
        "still busy: the webhook is held"
    );
    assert!(of(&notifier.deliveries(), Channel::Webhook).is_empty());
    release.send(()).unwrap();
    assert!(notifier.wait_idle(IDLE));

    let deliveries = notifier.deliveries();
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    assert!(deliveries.iter().all(|d| d.id == id));
    let email = of(&deliveries, Channel::Email);
    assert_eq!(email.len(), 1);
    assert!(!email[0].ok);
    assert_eq!(email[0].attempts, 3);
    assert!(email[0].error.as_deref().is_some_and(|e| !e.is_empty()));
    let webhook = of(&deliveries, Channel::Webhook);
    assert_eq!(webhook.len(), 1);
    assert_eq!((webhook[0].ok, webhook[0].attempts), (true, 1));
    let log = of(&deliveries, Channel::Log);
    assert_eq!(log.len(), 1);
    assert!(log[0].ok);
    let reason = log[0].error.as_deref().unwrap();
    assert!(
        reason.starts_with("email failed after 3 attempts: "),
        "{reason}"
    );
    // The fallback wrote the whole notification to the log.
    let logged = logs();
    let line = logged
        .lines()
        .find(|l| l.contains("unreachable-smtp-check") && l.contains("logged instead of sent"))
        .unwrap_or_else(|| panic!("no fallback line in:\n{logged}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("Training run 12 failed: out of memory."),
        "{line}"
    );
    assert!(line.contains("\"stage\":\"train\""), "{line}");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn without_channels_notifications_go_to_the_log() {
    setup();
    let notifier = Notifier::new(NotifyConfig::default()).unwrap();
    assert!(notifier.channels().is_empty());
    let id = notifier.notify(Notification::new(
        NotificationKind::ReviewNeeded,
        "no-channel-check: review ranker@5",
        "ranker@5 waits for a review.",
    ));
    assert!(notifier.wait_idle(IDLE));
    let deliveries = notifier.deliveries();
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d.id, id);
    assert_eq!(d.kind, NotificationKind::ReviewNeeded);
    assert_eq!((d.channel, d.ok, d.attempts), (Channel::Log, true, 1));
    assert_eq!(d.error, None);
    let logged = logs();
    assert!(
        logged.lines().any(|l| l.contains(" INFO ")
            && l.contains("no-channel-check: review ranker@5")
            && l.contains("ranker@5 waits for a review.")),
        "{logged}"
    );
}

#[test]
fn the_delivery_log_keeps_the_last_thousand() {
    setup();
    let notifier = Notifier::new(NotifyConfig::default()).unwrap();
    let clone = notifier.clone();
    let started = Instant::now();
    let mut last = None;
    for i in 0..1005 {
        last = Some(clone.notify(Notification::new(
            NotificationKind::Other,
            format!("bounded-log-check {i}"),
            "x",
        )));
    }
    // 1005 queue-and-return calls: far below any delivery time.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(notifier.wait_idle(IDLE));
    let deliveries = notifier.deliveries();
    assert_eq!(deliveries.len(), 1000);
    assert_eq!(deliveries[0].id.get(), 6);
    assert_eq!(deliveries.last().map(|d| d.id), last);
}

// ---------------------------------------------------------------- config

#[test]
fn config_parses_with_defaults_and_rejects_unknown_fields() {
    setup();
    let config: NotifyConfig = toml::from_str(
        r#"
        grace_period_s = 600
        [smtp]
        host = "smtp.example.com"
        from = "modelgate@example.com"
        to = ["ops@example.com"]
        [webhook]
        url = "https://hooks.example.com/x"
        "#,
    )
    .unwrap();
    assert_eq!(config.attempts, 3);
    assert_eq!(config.retry_base_ms, 500);
    assert_eq!(config.grace_period_s, 600);
    let smtp = config.smtp.as_ref().unwrap();
    assert_eq!(smtp.tls, SmtpTls::Starttls);
    assert_eq!(smtp.port(), 587);
    assert_eq!(smtp.timeout_ms, 10_000);
    assert_eq!(config.webhook.as_ref().unwrap().timeout_ms, 5_000);
    let notifier = Notifier::new(config).unwrap();
    assert_eq!(notifier.grace_period(), Duration::from_secs(600));

    let tls: NotifyConfig =
        toml::from_str("[smtp]\nhost = \"h\"\ntls = \"tls\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n")
            .unwrap();
    assert_eq!(tls.smtp.unwrap().port(), 465);
    let none: NotifyConfig = toml::from_str(
        "[smtp]\nhost = \"h\"\ntls = \"none\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n",
    )
    .unwrap();
    assert_eq!(none.smtp.unwrap().port(), 25);

    assert_eq!(
        toml::from_str::<NotifyConfig>("").unwrap(),
        NotifyConfig::default()
    );
    let unknown = toml::from_str::<NotifyConfig>("atempts = 3").unwrap_err();
    assert!(unknown.to_string().contains("atempts"), "{unknown}");
    let unknown = toml::from_str::<NotifyConfig>(
        "[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = []\npassword = \"x\"\n",
    )
    .unwrap_err();
    assert!(unknown.to_string().contains("password"), "{unknown}");
    let bad_mode =
        toml::from_str::<NotifyConfig>("[smtp]\nhost = \"h\"\ntls = \"ssl\"\nfrom = \"a@b.c\"\n")
            .unwrap_err();
    assert!(bad_mode.to_string().contains("ssl"), "{bad_mode}");
}

fn error_of(config: NotifyConfig) -> NotifyError {
    Notifier::new(config).expect_err("the config is invalid")
}

#[test]
fn config_errors_are_clear() {
    setup();
    let smtp = |f: &dyn Fn(&mut SmtpConfig)| {
        let mut s = smtp_config(2525);
        f(&mut s);
        NotifyConfig {
            smtp: Some(s),
            ..NotifyConfig::default()
        }
    };
    let webhook = |url: &str| NotifyConfig {
        webhook: Some(WebhookConfig::new(url)),
        ..NotifyConfig::default()
    };

    let e = error_of(smtp(&|s| s.from = "not an address".into()));
    assert!(matches!(e, NotifyError::InvalidAddress { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("smtp.from") && text.contains("\"not an address\""),
        "{text}"
    );

    let e = error_of(smtp(&|s| s.to.push("ops@@example.com".into())));
    let text = e.to_string();
    assert!(
        text.contains("smtp.to[2]") && text.contains("ops@@example.com"),
        "{text}"
    );

    let e = error_of(smtp(&|s| s.to.clear()));
    assert!(matches!(e, NotifyError::NoRecipients), "{e:?}");
    assert!(e.to_string().contains("at least one recipient"), "{e}");

    let e = error_of(smtp(&|s| {
        s.username_env = Some(USER_ENV.into());
        s.password_env = Some(UNSET_ENV.into());
    }));
    assert!(matches!(e, NotifyError::MissingEnv { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "notify: smtp.password_env names the environment variable {UNSET_ENV}, but it is not set"
        )
    );

    let e = error_of(smtp(&|s| s.username_env = Some(USER_ENV.into())));
    assert!(e.to_string().contains("set both or neither"), "{e}");

    let e = error_of(smtp(&|s| s.host = " ".into()));
    assert!(e.to_string().contains("smtp.host"), "{e}");

    let e = error_of(NotifyConfig {
        webhook: Some(WebhookConfig {
            bearer_token_env: Some(UNSET_ENV.into()),
            ..WebhookConfig::new("https://hooks.example.com/x")
        }),
        ..NotifyConfig::default()
    });
    assert!(
        e.to_string().contains("webhook.bearer_token_env") && e.to_string().contains(UNSET_ENV),
        "{e}"
    );

    for url in ["ftp://hooks.example.com/x", "hooks.example.com/x", ""] {
        let e = error_of(webhook(url));
        assert!(matches!(e, NotifyError::InvalidUrl { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("must start with http:// or https://"),
            "{e}"
        );
    }
    let e = error_of(webhook("http://"));
    assert!(matches!(e, NotifyError::InvalidUrl { .. }), "{e:?}");
    // A URL's path may be a secret (Slack's are): errors show only scheme and host.
    let e = error_of(webhook("hooks.slack.com/services/T000/B000/SeCrEtPaTh"));
    assert!(!e.to_string().contains("SeCrEtPaTh"), "{e}");

    let e = error_of(NotifyConfig {
        attempts: 0,
        ..NotifyConfig::default()
    });
    assert!(e.to_string().contains("attempts"), "{e}");
}

#[test]
fn credentials_never_appear_in_debug_output_errors_or_the_log() {
    setup();
    let secret_path = "services/T000/B000/XyZsecretPath";
    let mut smtp = smtp_config(closed_port());
    smtp.username_env = Some(USER_ENV.into());
    smtp.password_env = Some(PASSWORD_ENV.into());
    let mut webhook =
        WebhookConfig::new(&format!("http://127.0.0.1:{}/{secret_path}", closed_port()));
    webhook.bearer_token_env = Some(TOKEN_ENV.into());
    let config = fast(NotifyConfig {
        smtp: Some(smtp),
        webhook: Some(webhook),
        attempts: 2,
        ..NotifyConfig::default()
    });
    let notifier = Notifier::new(config.clone()).unwrap();
    notifier.notify(Notification::new(
        NotificationKind::Other,
        "secrets-check",
        "nothing secret here",
    ));
    assert!(notifier.wait_idle(IDLE));
    let deliveries = notifier.deliveries();
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    assert!(
        deliveries
            .iter()
            .all(|d| d.channel == Channel::Log || !d.ok)
    );

    let texts = [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{notifier:?}"),
        format!("{:?}", notifier.config()),
        format!("{deliveries:?}"),
        logs(),
    ];
    for text in &texts {
        for secret in [PASSWORD, TOKEN, secret_path] {
            assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
        }
    }
    // The Debug still says where things go.
    assert!(texts[2].contains(PASSWORD_ENV) && texts[2].contains("http://127.0.0.1:"));
}
