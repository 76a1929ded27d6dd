//! `byzsgd-node bench model` as a user runs it: one JSON line per case with the documented
//! fields, on synthetic data when the IDX files are absent. Checks the output's shape only;
//! speed is read from the printed figures, never asserted.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn bench_model_prints_one_json_line_per_case_and_falls_back_to_synthetic_data() {
    let output = Command::new(env!("CARGO_BIN_EXE_byzsgd-node"))
        .args([
            "bench",
            "model",
            "--models",
            "logistic,cnn",
            "--batch",
            "4,8",
        ])
        .args([
            "--seconds",
            "0.05",
            "--data-dir",
            "/nonexistent/byzsgd-bench-data",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    assert!(
        stderr.contains("synthetic"),
        "the fallback must be announced: {stderr}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cases: Vec<(&str, u64)> = lines
        .iter()
        .map(|v| (v["model"].as_str().unwrap(), v["batch"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        cases,
        [("logistic", 4), ("logistic", 8), ("cnn", 4), ("cnn", 8)]
    );
    for line in &lines {
        assert_eq!(line["bench"], "model");
        assert_eq!(line["threads"], 1);
        assert_eq!(line["data"], "synthetic");
        assert!(line["samples_per_s"].as_f64().unwrap() > 0.0, "{line}");
        assert!(line["final_loss"].as_f64().unwrap().is_finite(), "{line}");
    }
    assert_eq!(lines[0]["params"], 7_850);
    assert_eq!(lines[2]["params"], 20_522);
}

#[test]
fn bench_model_rejects_bad_flags_with_a_message() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_byzsgd-node"))
            .args(["bench", "model"])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&["--seconds", "0"]);
    assert!(!ok && stderr.contains("--seconds"), "{stderr}");
    let (ok, stderr) = run(&["--batch", "0"]);
    assert!(!ok && stderr.contains("--batch 0"), "{stderr}");
    let (ok, stderr) = run(&["--models", "resnet"]);
    assert!(!ok && stderr.contains("resnet"), "{stderr}");
}
