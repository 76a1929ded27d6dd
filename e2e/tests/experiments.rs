//! `byzsgd-exp run --backend kube` on real pods: the experiment runner applies a job and its
//! chaos to the cluster, the operator runs them as pods that really train, and the runner's
//! CSVs carry what the servers reported.
//!
//! Real parts it starts or drives: the testbed's tier c, the node and operator images, the
//! chart installed with `helm` as a release watching only the test's namespace, the current
//! `byzsgd-exp` binary (built by this test through cargo, so it is never stale), and the 12
//! pods of the experiments' own small job (`experiments/tests/common/mod.rs`: synthetic data,
//! logistic regression, 40 steps) with a `ByzantineChaos` silencing one worker. Nothing is
//! stood in for: the accuracy in `summary.csv` is the median of the real servers' final
//! `/status`, through the operator's status.

#[path = "../../experiments/tests/common/mod.rs"]
mod common;

use std::{path::PathBuf, process::Command};

use byzsgd_api::{
    chaos::ByzantineChaos,
    job::{ByzSgdJob, JobState},
};
use byzsgd_e2e::{
    cluster::{Cluster, TestNamespace, repo},
    stack::{self, Release},
    timing::Stopwatch,
};
use common::JOB;
use serde_json::{Value, json};

const TEST: &str = "experiments";

const CHAOS: &str = "apiVersion: byzsgd.io/v1alpha1
kind: ByzantineChaos
metadata: {name: quiet}
spec:
  job: tiny
  role: worker
  selector: {mode: indices, indices: [1]}
  action: {kind: silence}
  window: {fromStep: 0, untilStep: 1000}
";

/// The `byzsgd-exp` that `cargo test --workspace` builds for the experiments crate's own tests
/// (scripts/test has built it, so this is a no-op there): cargo's JSON messages name the
/// executable. Not `cargo build -p byzsgd-experiments --bin byzsgd-exp`: cargo unifies
/// dependency features over the packages and targets selected (dev-dependencies only when tests
/// are built), so that command would rebuild half the dependency graph with other features.
fn byzsgd_exp() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    // Without the variables cargo set for this test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, …):
    // build scripts such as ring's rerun when they change, so the inner cargo would rebuild
    // ring, rustls, kube and every crate above them (minutes), and the next build back again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_EXE_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cargo.env_remove(name.as_ref());
        }
    }
    let output = cargo
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--locked",
            "--message-format=json",
        ])
        .current_dir(repo())
        .output()
        .expect("running cargo test --no-run");
    assert!(
        output.status.success(),
        "cargo test --workspace --no-run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        // The binary itself, not its unit-test harness (`profile.test`).
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == "byzsgd-exp"
                && m["profile"]["test"] == false
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the byzsgd-exp executable")
}

/// One CSV file as rows of (column → cell).
fn csv_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|line| {
            header
                .iter()
                .zip(line.split(','))
                .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

#[test]
fn the_kube_backend_runs_a_scenario_on_real_pods_and_records_their_accuracy() {
    let total = Stopwatch::start(TEST, "total");
    let exe = byzsgd_exp();
    let cluster = Cluster::connect();
    stack::import_images();
    let namespace = TestNamespace::create("e2e-exp");
    let ns = namespace.name.as_str();
    let release = Release::install_watching(&cluster, "exp-e2e", ns, 1);

    let dir = tempfile::tempdir().expect("a temp dir");
    let scenario = dir.path().join("kube");
    std::fs::create_dir_all(&scenario).expect("mkdir");
    std::fs::write(scenario.join("job.yaml"), JOB).expect("job");
    std::fs::write(scenario.join("quiet.yaml"), CHAOS).expect("chaos");
    std::fs::write(
        scenario.join("scenario.yaml"),
        "name: kube\ntitle: T\njob: job.yaml\nchaos: [quiet.yaml]\ngrid:\n  seed: [7]\n",
    )
    .expect("scenario");
    let watch = Stopwatch::start(TEST, "byzsgd_exp_run");
    eprintln!("$ byzsgd-exp run kube --backend kube --namespace {ns} --timeout-seconds 240 --keep");
    let output = Command::new(&exe)
        .args(["run", "kube", "--backend", "kube", "--namespace", ns])
        .args(["--timeout-seconds", "240", "--keep"])
        .current_dir(dir.path())
        .env("BYZSGD_NO_PROGRESS", "1")
        .output()
        .expect("byzsgd-exp runs");
    let shown = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{shown}");
    watch.done();

    // Kept (--keep): the job the runner applied, run to its end by the operator on real pods,
    // and the chaos rewritten to target it.
    let job: ByzSgdJob = cluster.get(ns, "kube-0").expect("the job is kept");
    let status = job.status.expect("the operator reconciled it");
    assert_eq!(status.state, Some(JobState::Succeeded), "{status:#?}");
    let training = status.training.expect("a training status from the servers");
    let accuracy = training.accuracy.expect("an accuracy");
    assert_eq!(training.step, 40, "the servers' final step: {training:?}");
    let chaos: ByzantineChaos = cluster.get(ns, "kube-0-quiet").expect("the chaos is kept");
    assert_eq!(chaos.spec.chaos.job, "kube-0");
    let selected = chaos.status.map(|s| s.selected_pods).unwrap_or_default();
    assert_eq!(selected, vec!["kube-0-worker-1".to_owned()]);

    // The runner's CSVs carry the servers' accuracy, through the operator's status.
    let summary =
        std::fs::read_to_string(scenario.join("results/summary.csv")).expect("summary.csv");
    let rows = csv_rows(&summary);
    assert_eq!(rows.len(), 1, "{summary}");
    let value = |column: &str| -> f64 {
        rows[0]
            .get(column)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    assert!(
        (value("final_accuracy") - accuracy).abs() < 1e-9,
        "summary.csv {summary} vs the job's {accuracy}"
    );
    assert!(accuracy >= 0.3, "the job's target: {accuracy}");
    assert!(
        (value("converged") - 1.0).abs() < 1e-9,
        "the job Succeeded: {summary}"
    );
    let tidy = std::fs::read_to_string(scenario.join("results/results.csv")).expect("results");
    assert!(
        tidy.contains(&format!(",job,job,accuracy,{accuracy}")),
        "{tidy}"
    );
    namespace.delete_workloads();
    drop(release);
    total.done_with(&json!({"accuracy": accuracy}));
}
