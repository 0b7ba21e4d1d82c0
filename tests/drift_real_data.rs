//! `modelgate drift` on real data with known drift (Elec2, see data/README.md): the early and
//! late windows are flagged in the columns known to drift and not in the uniform-by-
//! construction ones; two random halves of one window raise no alarm. Also: bad CSV exits 2
//! naming file, line and column.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modelgate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes the header and the data rows `[start, end)` (0-based) that `keep` accepts.
fn window(
    dir: &Path,
    name: &str,
    start: usize,
    end: usize,
    keep: impl Fn(usize) -> bool,
) -> PathBuf {
    let text = std::fs::read_to_string(data()).expect("data/elec2.csv");
    let mut lines = text.lines();
    let mut out = String::from(lines.next().expect("header"));
    out.push('\n');
    for (i, line) in lines.enumerate().skip(start).take(end - start) {
        if keep(i) {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, out).expect("write window");
    path
}

fn drift_json(reference: &Path, current: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["drift", "--reference"])
        .arg(reference)
        .arg("--current")
        .arg(current)
        .arg("--json")
        .args(extra)
        .output()
        .expect("run modelgate drift");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn verdicts(rows: &[serde_json::Value]) -> std::collections::BTreeMap<String, String> {
    rows.iter()
        .map(|r| {
            (
                r["column"].as_str().expect("column").to_string(),
                r["verdict"].as_str().expect("verdict").to_string(),
            )
        })
        .collect()
}

#[test]
fn early_and_late_elec2_windows_drift_where_the_data_drifts() {
    let dir = temp_dir("elec2-early-late");
    let early = window(&dir, "early.csv", 0, 10_000, |_| true);
    let late = window(&dir, "late.csv", 35_312, 45_312, |_| true);
    let columns = "period,nswprice,nswdemand,vicprice,vicdemand,transfer";
    for mode in [
        &["--columns", columns][..],
        &["--columns", columns, "--exact"][..],
    ] {
        let rows = drift_json(&early, &late, mode);
        let v = verdicts(&rows);
        for column in ["vicprice", "vicdemand", "transfer", "nswprice"] {
            assert_eq!(v[column], "drift", "{column} in {mode:?}: {rows:#?}");
        }
        assert_eq!(
            v["period"], "none",
            "period is uniform by construction: {rows:#?}"
        );
        // The KS statistics agree with SciPy's on the raw data (data/README.md), within the
        // reported error bound (plus the 1e-4 rounding of the published figures).
        for (column, scipy_d) in [
            ("nswprice", 0.2193),
            ("vicprice", 0.5254),
            ("vicdemand", 0.5902),
            ("transfer", 0.7377),
            ("period", 0.0016),
        ] {
            let row = rows.iter().find(|r| r["column"] == column).expect("column");
            let (d, bound) = (
                row["ks"].as_f64().expect("ks"),
                row["ks_error_bound"].as_f64().expect("bound"),
            );
            assert!(
                (d - scipy_d).abs() <= bound + 1e-4,
                "{column}: D {d} ± {bound} vs SciPy {scipy_d}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn random_halves_of_one_window_raise_no_alarm() {
    let dir = temp_dir("elec2-halves");
    // A fixed pseudo-random split of the late window's rows.
    let pick = |i: usize| {
        (i as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(17)
            .is_multiple_of(2)
    };
    let a = window(&dir, "a.csv", 35_312, 45_312, pick);
    let b = window(&dir, "b.csv", 35_312, 45_312, |i| !pick(i));
    for mode in [&[][..], &["--exact"][..]] {
        let rows = drift_json(
            &a,
            &b,
            &[
                &[
                    "--columns",
                    "period,nswprice,nswdemand,vicprice,vicdemand,transfer,label",
                ][..],
                mode,
            ]
            .concat(),
        );
        for row in &rows {
            assert_eq!(row["verdict"], "none", "false alarm: {row:#}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_csv_exits_2_naming_file_line_and_column() {
    let dir = temp_dir("bad-csv");
    let good = dir.join("good.csv");
    std::fs::write(&good, "x,y\n1,a\n2,b\n").expect("write");
    let cases = [
        (
            "ragged.csv",
            "x,y\n1,a\n2\n",
            vec!["ragged.csv:3", "1 fields", "2"],
        ),
        ("empty.csv", "", vec!["empty.csv", "empty"]),
        (
            "header-only.csv",
            "x,y\n",
            vec!["header-only.csv", "no data rows"],
        ),
        (
            "not-a-number.csv",
            "x,y\n1,a\nabc,b\n",
            vec!["not-a-number.csv:3", "`x`", "abc"],
        ),
        (
            "quote.csv",
            "x,y\n1,\"open\n",
            vec!["quote.csv:2", "quoted"],
        ),
    ];
    for (name, text, needles) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["drift", "--numeric", "x", "--reference"])
            .arg(&good)
            .arg("--current")
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{name}: {stderr:?} should contain {needle:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
