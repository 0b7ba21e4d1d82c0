//! The `modelgate route` command: JSON lines, many keys, and exit code 2 with a clear message
//! on bad input.

use std::io::Write;
use std::process::{Command, Output};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/experiments.toml");

fn modelgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .output()
        .expect("run modelgate")
}

#[test]
fn json_gives_one_object_per_experiment() {
    let out = modelgate(&["route", "--config", EXAMPLE, "--key", "qa-user-1", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["experiment"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["ranker", "speller", "checkout", "pricing"]);
    for line in &lines {
        let bucket = line["bucket"].as_f64().expect("bucket");
        assert!((0.0..1.0).contains(&bucket));
        assert_eq!(
            line["in_experiment"].as_bool().expect("bool"),
            !line["variant"].is_null()
        );
    }
    // The override in the example config.
    assert_eq!(lines[0]["variant"], "candidate");
    assert_eq!(lines[0]["reason"], "override");
    assert_eq!(lines[0]["model"], "ranker@4");
}

#[test]
fn keys_from_file_routes_every_line_like_single_keys() {
    let dir = std::env::temp_dir().join(format!("modelgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("keys.txt");
    let keys: Vec<String> = (0..50).map(|i| format!("user-{i}")).collect();
    // CRLF and LF endings, blank lines (skipped) and a last line without an ending.
    let mut text = String::new();
    for (i, key) in keys.iter().enumerate() {
        text.push_str(key);
        text.push_str(if i % 2 == 0 { "\r\n" } else { "\n" });
        if i % 10 == 0 {
            text.push_str("\n\r\n");
        }
    }
    text.push_str("user-50");
    std::fs::File::create(&path)
        .expect("create")
        .write_all(text.as_bytes())
        .expect("write");
    let many = modelgate(&[
        "route",
        "--config",
        EXAMPLE,
        "--keys-from",
        path.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert!(many.status.success());
    let many = String::from_utf8(many.stdout).expect("utf-8");
    assert_eq!(many.lines().count(), 51 * 4);
    for key in ["user-0", "user-17", "user-49", "user-50"] {
        let single = modelgate(&["route", "--config", EXAMPLE, "--key", key, "--json"]);
        let single = String::from_utf8(single.stdout).expect("utf-8");
        for line in single.lines() {
            assert!(
                many.lines().any(|l| l == line),
                "{line} missing from --keys-from output"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A last line ending in a lone CR is the key without it; lines of spaces are blank
/// (skipped); the text output never prints a bucket as 1.
#[test]
fn key_files_drop_a_last_carriage_return_and_skip_whitespace_lines() {
    let dir = std::env::temp_dir().join(format!("modelgate-cli-cr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("one.toml");
    std::fs::write(
        &config,
        "[[experiments]]\nname = \"e\"\n[[experiments.variants]]\nname = \"only\"\n",
    )
    .expect("write");
    let keys = dir.join("keys.txt");
    std::fs::write(&keys, "k1\r\n   \r\n\t\nk2\r\nuser-607071\r").expect("write");
    let out = modelgate(&[
        "route",
        "--config",
        config.to_str().expect("utf-8"),
        "--keys-from",
        keys.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let routed: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(routed, ["k1", "k2", "user-607071"], "{text}");
    for line in text.lines() {
        assert!(!line.contains("bucket=1.000000"), "{line}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_config_exits_2_naming_experiment_and_field() {
    let dir = std::env::temp_dir().join(format!("modelgate-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[[experiments]]\nname = \"ranker\"\n[[experiments.variants]]\nname = \"a\"\nweight = nan\n[[experiments.variants]]\nname = \"b\"\nweight = 1\n").expect("write");
    let out = modelgate(&[
        "route",
        "--config",
        path.to_str().expect("utf-8"),
        "--key",
        "k",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`ranker`") && stderr.contains("variants[0].weight"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let missing = modelgate(&[
        "route",
        "--config",
        "/nonexistent/modelgate.toml",
        "--key",
        "k",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));

    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "# nothing here yet\n").expect("write");
    let out = modelgate(&[
        "route",
        "--config",
        empty.to_str().expect("utf-8"),
        "--key",
        "k",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no experiments"));
    std::fs::remove_dir_all(&dir).ok();
}
