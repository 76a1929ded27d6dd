//! How `byzsgd-node server|worker` ends when it cannot start, as the operator reads it: a data
//! set it cannot read exits with code 78 (no restart can fix it) and writes the reason to
//! `--termination-log` (Kubernetes' termination message); other start-up errors exit 1. The real
//! binary, real files in a temp dir.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

use byzsgd_api::admin::EXIT_DATA_UNAVAILABLE;

const BINARY: &str = env!("CARGO_BIN_EXE_byzsgd-node");

fn write_job(dir: &Path, dataset: &str) -> std::path::PathBuf {
    let path = dir.join("job.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {{name: exits}}
spec:
  model: {{kind: logistic}}
  dataset: {{name: {dataset}}}
  training: {{steps: 10, learningRate: 0.05}}
  servers: {{replicas: 1}}
  workers: {{replicas: 1}}
"
        ),
    )
    .unwrap();
    path
}

fn run_server(job: &Path, data_dir: &Path, termination_log: &Path) -> std::process::Output {
    Command::new(BINARY)
        .args(["server", "--index", "0", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--peers", "server-0=127.0.0.1:1,worker-0=127.0.0.1:2"])
        // The data set is what this test is about; the links never open.
        .arg("--insecure")
        .arg("--job-file")
        .arg(job)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--termination-log")
        .arg(termination_log)
        .output()
        .unwrap()
}

#[test]
fn a_missing_data_set_exits_78_and_says_why_in_the_termination_log() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "fashion-mnist");
    let empty = dir.path().join("dataset");
    std::fs::create_dir(&empty).unwrap();
    let log = dir.path().join("termination-log");
    let output = run_server(&job, &empty, &log);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_DATA_UNAVAILABLE)),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(message.starts_with("error: "), "{message}");
    assert!(
        message.contains(&empty.display().to_string()),
        "names the directory: {message}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains(message.trim()));
}

#[test]
fn other_start_up_errors_exit_1_and_also_write_the_termination_log() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "synthetic");
    let log = dir.path().join("termination-log");
    let output = Command::new(BINARY)
        .args(["server", "--index", "7", "--peers", "server-0=127.0.0.1:1"])
        .arg("--job-file")
        .arg(&job)
        .arg("--termination-log")
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(message.contains("--index 7 is out of range"), "{message}");
}
