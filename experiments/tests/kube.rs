//! `byzsgd-exp run --backend kube` against the project's testbed (tier b: real kube-apiserver,
//! etcd, controller-manager, scheduler; kwok nodes) with the real operator binary reconciling.
//!
//! STAND-IN: kwok pods run no process, so nothing answers on the pods' IPs. A loopback HTTP
//! server answers every server pod's `/status` (the node's JSON format) with a finished run at
//! accuracy 0.9, and the operator's `--status-url-template` points at it. Everything else —
//! applying the job, the operator creating pods and marking the job Succeeded, the backend
//! polling the status, deleting the job — is the real thing.

#[path = "../../operator/tests/support/mod.rs"]
mod support;

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use byzsgd_api::chaos::ByzantineChaos;
use byzsgd_api::job::ByzSgdJob;
use kube::CustomResourceExt;

use common::JOB;
use support::{TestNamespace, Testbed, install_crd};

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

/// Answers `/chaos/…` with the node's acceptance and anything else with one finished node
/// status, forever (the thread dies with the test).
fn node_stand_in() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            let mut length = 0;
            // Read the request head up to the blank line, then the body.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let body = if request.contains("/chaos/") {
                r#"{"armed": "silence", "fromStep": 0, "untilStep": 1000, "step": 0}"#
            } else {
                r#"{"step": 40, "loss": 0.4, "accuracy": 0.9, "finished": true}"#
            };
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kube_backend_applies_the_job_waits_for_the_operator_and_reads_its_status() {
    let testbed = Testbed::connect().await;
    testbed.require_tier_b().await;
    install_crd(&testbed, &ByzSgdJob::crd(), "byzsgd-exp-tests").await;
    install_crd(&testbed, &ByzantineChaos::crd(), "byzsgd-exp-tests").await;
    let ns = TestNamespace::create(&testbed, "exp-kube").await;
    ns.wait_for_default_service_account().await;

    let exe = PathBuf::from(env!("CARGO_BIN_EXE_byzsgd-exp"));
    let operator_bin = exe.with_file_name("byzsgd-operator");
    assert!(
        operator_bin.is_file(),
        "{} is missing: build the workspace's tests (`cargo test --workspace`) first",
        operator_bin.display()
    );
    let port = node_stand_in();
    let mut operator = tokio::process::Command::new(&operator_bin)
        .args([
            "run",
            "--watch-namespace",
            &ns.name,
            "--metrics-listen",
            "127.0.0.1:0",
            "--status-url-template",
            &format!("http://127.0.0.1:{port}/status/{{pod}}"),
            "--chaos-url-template",
            &format!("http://127.0.0.1:{port}/chaos/{{pod}}"),
        ])
        .env("KUBECONFIG", &testbed.kubeconfig)
        .env("BYZSGD_OPERATOR_STATUS_INTERVAL_SECONDS", "0.5")
        .kill_on_drop(true)
        .spawn()
        .expect("the operator starts");

    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("kube");
    std::fs::create_dir_all(&scenario).expect("mkdir");
    std::fs::write(scenario.join("job.yaml"), JOB).expect("job");
    std::fs::write(scenario.join("quiet.yaml"), CHAOS).expect("chaos");
    std::fs::write(
        scenario.join("scenario.yaml"),
        "name: kube\ntitle: T\njob: job.yaml\nchaos: [quiet.yaml]\ngrid:\n  seed: [7]\n",
    )
    .expect("scenario");
    let output = tokio::process::Command::new(&exe)
        .args(["run", "kube", "--backend", "kube", "--namespace", &ns.name])
        .args(["--timeout-seconds", "180", "--keep"])
        .current_dir(dir.path())
        .env("KUBECONFIG", &testbed.kubeconfig)
        .env("BYZSGD_NO_PROGRESS", "1")
        .output()
        .await
        .expect("byzsgd-exp runs");
    let _ = operator.start_kill();
    let shown = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{shown}");
    let summary =
        std::fs::read_to_string(scenario.join("results/summary.csv")).expect("summary.csv");
    let header: Vec<&str> = summary.lines().next().expect("header").split(',').collect();
    let row: Vec<&str> = summary.lines().nth(1).expect("a run").split(',').collect();
    let value = |column: &str| -> f64 {
        let index = header.iter().position(|c| *c == column).expect("column");
        row[index].parse().unwrap_or(f64::NAN)
    };
    assert!((value("final_accuracy") - 0.9).abs() < 1e-9, "{summary}");
    assert!(
        (value("converged") - 1.0).abs() < 1e-9,
        "the job Succeeded: {summary}"
    );
    let tidy = std::fs::read_to_string(scenario.join("results/results.csv")).expect("results");
    assert!(tidy.contains(",job,job,accuracy,0.9"), "{tidy}");
    // Kept (--keep): the job, and the chaos rewritten to target it, reconciled by the operator.
    let jobs: kube::Api<ByzSgdJob> = ns.api();
    let job = jobs.get("kube-0").await.expect("the job is kept");
    assert!(job.status.is_some(), "the operator reconciled it");
    let chaos: kube::Api<ByzantineChaos> = ns.api();
    let applied = chaos.get("kube-0-quiet").await.expect("the chaos is kept");
    assert_eq!(applied.spec.chaos.job, "kube-0");
    let selected = applied.status.map(|s| s.selected_pods).unwrap_or_default();
    assert_eq!(selected, vec!["kube-0-worker-1".to_owned()]);
    ns.delete().await;
}
