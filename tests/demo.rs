//! `modelgate demo` in a reduced mode (fewer replayed rows): its JSON summary must show
//! zero failed requests, at least one training and promotion, and decisions with evidence.
#![cfg(feature = "sidecar")]

#[path = "common/smtp.rs"]
mod smtp;

#[test]
fn the_demo_runs_and_its_summary_holds() {
    let dir = std::env::temp_dir().join(format!("modelgate-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let summary_path = dir.join("out.json");
    // The notifications go to a real SMTP server on loopback.
    let sink = smtp::SmtpSink::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["demo", "--rows", "3000", "--users-per-row", "8", "--smtp"])
        .arg(format!("127.0.0.1:{}", sink.port))
        .arg("--dir")
        .arg(&dir)
        .arg("--summary-json")
        .arg(&summary_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("drift detected"), "{stdout}");
    assert!(stdout.contains("Summary"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["failed_requests"], 0);
    assert_eq!(summary["requests"], 3000 * 8);
    assert!(summary["retrainings"].as_u64().unwrap() >= 2, "{summary}");
    assert!(summary["promotions"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["rollbacks"].is_u64());
    let alerts = summary["drift_alerts"].as_array().unwrap();
    assert!(!alerts.is_empty());
    for a in alerts {
        assert!(a["feature"].is_string());
        assert!(a["ks"].as_f64().unwrap() > 0.0);
        assert!(a["ks_error_bound"].as_f64().unwrap() >= 0.0);
        assert!(a["psi"].is_f64());
    }
    let decisions = summary["decisions"].as_array().unwrap();
    assert!(
        decisions.iter().any(|d| d["kind"].is_string()
            && d["model_version"].is_string()
            && d["evidence"].is_object()),
        "{summary}"
    );
    assert!(decisions.iter().any(|d| d["improvement_pct"].is_f64()));
    // The first model's update notice arrived by email, before it took effect.
    let mut subjects = Vec::new();
    while let Some(mail) = sink.recv(std::time::Duration::from_secs(5)) {
        subjects.push(mail.text());
    }
    assert!(
        subjects
            .iter()
            .any(|m| m.contains("elec@1 goes into production")),
        "{subjects:?}"
    );
    assert!(
        stdout.contains("notified administrators via email"),
        "{stdout}"
    );
    let database = std::path::PathBuf::from(summary["database"].as_str().unwrap());
    assert!(database.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
