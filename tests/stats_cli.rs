//! `modelgate abtest`: JSON and table output on observation and aggregate files, and exit
//! code 2 with a clear message on bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modelgate-stats-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write input");
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .arg("abtest")
        .args(args)
        .output()
        .expect("run modelgate")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn binary_aggregates_pick_a_winner() {
    let path = write(
        "binary.csv",
        "variant,n,successes\ncandidate,20000,2600\ncontrol,20000,2000\n",
    );
    let v = json(&["--input", path.to_str().unwrap(), "--json"]);
    assert_eq!(v["variants"].as_array().unwrap().len(), 2);
    assert_eq!(v["variants"][1]["variant"], "control");
    assert_eq!(v["variants"][1]["n"], 20000);
    let c = &v["comparisons"][0];
    assert_eq!(c["variant"], "candidate");
    assert!((c["lift"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    for key in [
        "lift_ci",
        "p_value",
        "sequential_p_value",
        "srm_p_value",
        "decision",
    ] {
        assert!(!c[key].is_null(), "{key}");
    }
    assert_eq!(c["decision"], "winner");
    assert!(c["p_value"].as_f64().unwrap() <= c["sequential_p_value"].as_f64().unwrap());
    // A 50% margin is out of reach.
    let v = json(&[
        "--input",
        path.to_str().unwrap(),
        "--json",
        "--margin",
        "0.5",
    ]);
    assert_eq!(v["comparisons"][0]["decision"], "continue");
}

#[test]
fn observations_and_continuous_aggregates() {
    let mut text = String::from("variant,value\n");
    for i in 0..300 {
        text.push_str(&format!("a,{}\nb,{}\nc,{}\n", i % 7, (i % 7) + 1, i % 5));
    }
    let path = write("observations.csv", &text);
    let v = json(&[
        "--input",
        path.to_str().unwrap(),
        "--json",
        "--control",
        "a",
        "--weights",
        "a=1,b=1,c=1",
    ]);
    assert_eq!(v["metric"], "continuous");
    assert_eq!(v["comparisons"].as_array().unwrap().len(), 2);
    assert_eq!(v["variants"][0]["n"], 300);
    let path = write(
        "moments.csv",
        "variant,n,mean,variance\ncontrol,500,10.0,4.0\nnew,480,10.1,4.5\n",
    );
    let out = run(&["--input", path.to_str().unwrap()]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("control") && table.contains("new"),
        "{table}"
    );
}

#[test]
fn srm_blocks_the_winner() {
    let path = write(
        "srm.csv",
        "variant,n,successes\ncontrol,20000,2000\ncandidate,26000,3400\n",
    );
    let v = json(&["--input", path.to_str().unwrap(), "--json"]);
    assert!(v["comparisons"][0]["srm_p_value"].as_f64().unwrap() < 0.001);
    assert_eq!(v["comparisons"][0]["decision"], "continue");
    // Configured 20/26 weights explain the counts.
    let v = json(&[
        "--input",
        path.to_str().unwrap(),
        "--json",
        "--weights",
        "control=20,candidate=26",
    ]);
    assert_eq!(v["comparisons"][0]["decision"], "winner");
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let cases: [(&str, &str, &[&str], &str); 9] = [
        ("header", "variant,score\na,1\nb,2\n", &[], "unknown header"),
        ("nan", "variant,value\na,1\nb,x\n", &[], "line 3"),
        (
            "negative",
            "variant,n,successes\na,-5,0\nb,5,1\n",
            &[],
            "n must be >= 0",
        ),
        ("over", "variant,n,successes\na,5,6\nb,5,1\n", &[], "exceed"),
        (
            "single",
            "variant,n,successes\na,5,1\n",
            &[],
            "two variants",
        ),
        (
            "control",
            "variant,n,successes\na,5,1\nb,5,1\n",
            &["--control", "zz"],
            "unknown control",
        ),
        (
            "weights",
            "variant,n,successes\na,5,1\nb,5,1\n",
            &["--weights", "a=1,q=1"],
            "unknown variant",
        ),
        (
            "weights-twice",
            "variant,n,successes\na,5,1\nb,5,1\n",
            &["--weights", "a=1,b=1,a=3"],
            "the weight of a is given twice",
        ),
        (
            "metric",
            "variant,n,successes\na,5,1\nb,5,1\n",
            &["--metric", "continuous"],
            "binary",
        ),
    ];
    for (name, text, extra, message) in cases {
        let path = write(&format!("bad-{name}.csv"), text);
        let mut args = vec!["--input", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{name}: {stderr}");
    }
}

/// A metric whose values are negative (a log-likelihood, a profit that is a loss): the
/// relative lift keeps the direction of the difference, so a worse candidate is never the
/// winner and a better one is not blocked.
#[test]
fn negative_control_mean_keeps_the_direction() {
    let worse = write(
        "neg-worse.csv",
        "variant,n,mean,variance\ncontrol,10000,-10,4\ncandidate,10000,-12,4\n",
    );
    let v = json(&["--input", worse.to_str().unwrap(), "--json"]);
    let c = &v["comparisons"][0];
    assert!(
        (c["absolute_lift"].as_f64().unwrap() + 2.0).abs() < 1e-9,
        "{c}"
    );
    assert!((c["lift"].as_f64().unwrap() + 0.2).abs() < 1e-9, "{c}");
    assert!(c["lift_ci"][1].as_f64().unwrap() < 0.0, "{c}");
    assert!(c["sequential_lift_ci"][1].as_f64().unwrap() < 0.0, "{c}");
    assert_ne!(c["decision"], "winner", "{c}");
    let better = write(
        "neg-better.csv",
        "variant,n,mean,variance\ncontrol,10000,-10,4\ncandidate,10000,-8,4\n",
    );
    let v = json(&["--input", better.to_str().unwrap(), "--json"]);
    let c = &v["comparisons"][0];
    assert!((c["lift"].as_f64().unwrap() - 0.2).abs() < 1e-9, "{c}");
    assert!(c["sequential_lift_ci"][0].as_f64().unwrap() > 0.0, "{c}");
    assert_eq!(c["decision"], "winner", "{c}");
    // The same from observations: control around -10, candidate around -12 (or -8).
    for (shift, expected) in [(-2.0, "worse"), (2.0, "better")] {
        let mut text = String::from("variant,value\n");
        for i in 0..2000 {
            let noise = f64::from(i % 9) - 4.0;
            text.push_str(&format!(
                "control,{}\ncandidate,{}\n",
                -10.0 + noise,
                -10.0 + shift + noise
            ));
        }
        let path = write(&format!("neg-observations-{expected}.csv"), &text);
        let v = json(&["--input", path.to_str().unwrap(), "--json"]);
        let c = &v["comparisons"][0];
        let lift = c["lift"].as_f64().unwrap();
        let absolute = c["absolute_lift"].as_f64().unwrap();
        let control_mean = v["variants"][0]["mean"].as_f64().unwrap();
        assert!((lift - absolute / control_mean.abs()).abs() < 1e-12, "{c}");
        assert!((lift - shift / 10.0).abs() < 1e-3, "{expected}: {c}");
        if expected == "worse" {
            assert_ne!(c["decision"], "winner", "{c}");
            assert!(c["sequential_lift_ci"][1].as_f64().unwrap() < 0.0, "{c}");
        } else {
            assert_eq!(c["decision"], "winner", "{c}");
        }
    }
}

/// Counts whose sum does not fit in 64 bits: the z-test is computed, not wrapped around
/// (statsmodels' proportions_ztest gives p = 0.456 on this file).
#[test]
fn huge_counts_do_not_overflow() {
    let path = write(
        "huge.csv",
        "variant,n,successes\ncontrol,10000000000000000000,1000000000000000000\n\
         candidate,10000000000000000000,1000000001000000000\n",
    );
    let v = json(&["--input", path.to_str().unwrap(), "--json"]);
    let p = v["comparisons"][0]["p_value"].as_f64().unwrap();
    assert!((p - 0.456).abs() < 1e-3, "{v}");
}

/// An arm without observations has no mean, lift or probability: null, with the reason
/// `no_data`, never a winner or a loser. A continuous arm with one observation cannot
/// have a sample variance: a clear input error.
#[test]
fn empty_arms_give_null_statistics() {
    let files = [
        (
            "empty-continuous-candidate.csv",
            "variant,n,mean,variance\ncontrol,10000,10,4\ncandidate,0,20,4\n",
        ),
        (
            "empty-continuous-control.csv",
            "variant,n,mean,variance\ncontrol,0,10,4\ncandidate,10000,20,4\n",
        ),
        (
            "empty-binary-candidate.csv",
            "variant,n,successes\ncontrol,10000,1000\ncandidate,0,0\n",
        ),
        (
            "empty-binary-control.csv",
            "variant,n,successes\ncontrol,0,0\ncandidate,10000,1000\n",
        ),
    ];
    for (name, text) in files {
        let path = write(name, text);
        let v = json(&["--input", path.to_str().unwrap(), "--json"]);
        let c = &v["comparisons"][0];
        for key in [
            "lift",
            "lift_ci",
            "absolute_lift",
            "absolute_lift_ci",
            "p_value",
            "sequential_p_value",
            "sequential_lift_ci",
            "probability_better",
        ] {
            assert!(c[key].is_null(), "{name}: {key} in {c}");
        }
        assert_eq!(c["decision"], "continue", "{name}: {c}");
        assert_eq!(c["reason"], "no_data", "{name}: {c}");
        let empty = v["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|variant| variant["n"] == 0)
            .unwrap();
        assert!(
            empty["mean"].is_null() && empty["ci"].is_null(),
            "{name}: {v}"
        );
        // The table says so too.
        let out = run(&["--input", path.to_str().unwrap()]);
        assert!(out.status.success());
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(table.contains("no_data"), "{name}: {table}");
    }
    let path = write(
        "one-value.csv",
        "variant,n,mean,variance\ncontrol,10000,10,4\ncandidate,1,20,400\n",
    );
    let out = run(&["--input", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("at least two observations"),
        "{stderr}"
    );
}

/// A control mean of 0 leaves only the relative lift undefined: the difference and its
/// interval are still given. The interval does not depend on where the means sit, so it
/// must equal the one of the same data shifted away from 0 (checked against SciPy in
/// tests/stats_oracle.rs).
#[test]
fn zero_control_mean_still_gives_the_difference() {
    let cases = [
        (
            "variant,n,mean,variance\ncontrol,1000,0,4\ncandidate,900,0.5,3\n",
            "variant,n,mean,variance\ncontrol,1000,7,4\ncandidate,900,7.5,3\n",
        ),
        (
            "variant,n,successes\ncontrol,10000,0\ncandidate,10000,50\n",
            "",
        ),
    ];
    let differences = [0.5, 0.005];
    for (i, (zero, shifted)) in cases.iter().enumerate() {
        let path = write(&format!("zero-{i}.csv"), zero);
        let v = json(&["--input", path.to_str().unwrap(), "--json"]);
        let c = &v["comparisons"][0];
        assert!(c["lift"].is_null() && c["lift_ci"].is_null(), "{c}");
        assert!(
            (c["absolute_lift"].as_f64().unwrap() - differences[i]).abs() < 1e-12,
            "{c}"
        );
        let ci = &c["absolute_lift_ci"];
        assert!(!ci.is_null(), "{c}");
        if i == 0 {
            let path = write(&format!("shifted-{i}.csv"), shifted);
            let s = json(&["--input", path.to_str().unwrap(), "--json"]);
            let want = &s["comparisons"][0]["absolute_lift_ci"];
            for end in 0..2 {
                let (got, want) = (ci[end].as_f64().unwrap(), want[end].as_f64().unwrap());
                assert!((got - want).abs() < 1e-12, "{ci} vs {want}");
            }
        } else {
            // Binary: the control's Wald variance is 0, the interval is the candidate's
            // alone, 0.005 ± 1.959964 · sqrt(0.005 · 0.995 / 10000).
            let half = 1.959_963_984_540_054 * (0.005f64 * 0.995 / 10_000.0).sqrt();
            assert!(
                (ci[0].as_f64().unwrap() - (0.005 - half)).abs() < 1e-12,
                "{ci}"
            );
            assert!(
                (ci[1].as_f64().unwrap() - (0.005 + half)).abs() < 1e-12,
                "{ci}"
            );
        }
    }
}

/// A negative margin (non-inferiority: the candidate may be up to 5% worse) is given after
/// a space, as any other value.
#[test]
fn a_negative_margin_is_accepted() {
    let path = write(
        "margin.csv",
        "variant,n,successes\ncontrol,20000,2000\ncandidate,20000,2000\n",
    );
    let v = json(&[
        "--input",
        path.to_str().unwrap(),
        "--json",
        "--margin",
        "-0.05",
    ]);
    assert_eq!(v["margin"], -0.05);
    let v = json(&[
        "--input",
        path.to_str().unwrap(),
        "--json",
        "--margin=-0.05",
    ]);
    assert_eq!(v["margin"], -0.05);
}

/// A file saved with a UTF-8 byte order mark (Excel, Notepad) reads like one without.
#[test]
fn a_byte_order_mark_is_skipped() {
    let text = "variant,n,successes\ncontrol,20000,2000\ncandidate,20000,2600\n";
    let plain = write("no-bom.csv", text);
    let bom = write("bom.csv", &format!("\u{feff}{text}"));
    let want = json(&["--input", plain.to_str().unwrap(), "--json"]);
    let got = json(&["--input", bom.to_str().unwrap(), "--json"]);
    assert_eq!(got, want);
}
