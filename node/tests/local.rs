//! `byzsgd-node local` end to end: the real binary starts every node as a separate process on
//! loopback, writes its results, and leaves no process behind — neither when the job ends nor
//! when the runner itself is killed.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BINARY: &str = env!("CARGO_BIN_EXE_byzsgd-node");

fn job(dir: &Path, name: &str, steps: u64) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {{name: {name}}}
spec:
  model: {{kind: logistic}}
  dataset: {{name: synthetic}}
  training: {{steps: {steps}, batchSize: 16, learningRate: 0.05, seed: 2, evaluateEvery: 20}}
  servers: {{replicas: 5, byzantine: 1}}
  workers: {{replicas: 4, byzantine: 1}}
  inject:
    - {{role: server, count: 1, attack: equivocate}}
    - {{role: worker, count: 1, attack: alie}}
  convergence: {{targetAccuracy: 0.8}}
  runPolicy: {{backoffLimit: 3}}
  template: {{image: ignored-locally}}
"
        ),
    )
    .unwrap();
    path
}

/// Processes whose command line mentions `needle` (the job file is unique to each test).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) && pid != std::process::id() {
            found.push(pid);
        }
    }
    found
}

fn wait_until_gone(needle: &str, within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn local_run_converges_writes_results_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), "local-ok", 120);
    let runs = dir.path().join("runs");
    let output = Command::new(BINARY)
        .args(["local", "--no-progress", "--runs-dir"])
        .arg(&runs)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("final accuracy"), "{stdout}");

    let run_dir = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["steps"], 120);
    assert!(
        summary["finalAccuracy"].as_f64().unwrap() >= 0.8,
        "{summary}"
    );
    assert_eq!(summary["converged"], true);
    assert!(summary["maxDrift"].as_f64().unwrap().is_finite());

    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    assert!(
        csv.starts_with("wall_seconds,step,node,role,byzantine,loss,accuracy"),
        "{csv}"
    );
    assert!(
        csv.lines().any(|line| line.contains(",runner,runner,")),
        "drift rows from the runner"
    );
    assert!(
        csv.lines().filter(|line| line.contains(",server-")).count() >= 4 * 120,
        "a row per server step"
    );

    let targets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("targets.json")).unwrap())
            .unwrap();
    assert_eq!(
        targets.as_array().unwrap().len(),
        5 + 4 + 1,
        "every node plus the runner"
    );
    let png = std::fs::read(run_dir.join("plot.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let needle = file.to_string_lossy().to_string();
    assert_eq!(
        wait_until_gone(&needle, Duration::from_secs(5)),
        Vec::<u32>::new(),
        "children left behind"
    );
}

#[test]
fn children_exit_when_the_runner_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), "local-kill", 100_000);
    let needle = file.to_string_lossy().to_string();
    let mut runner = Command::new(BINARY)
        .args(["local", "--no-progress", "--runs-dir"])
        .arg(dir.path().join("runs"))
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the nine nodes run.
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_mentioning(&needle).len() < 10 {
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    runner.kill().unwrap(); // SIGKILL: the runner gets no chance to clean up.
    runner.wait().unwrap();
    let left = wait_until_gone(&needle, Duration::from_secs(10));
    assert!(left.is_empty(), "children outlived their runner: {left:?}");
}

/// The newest checkpoint step of each server of `job` under `checkpoints` (servers without
/// one are left out).
fn newest_checkpoints(checkpoints: &Path, job: &str) -> std::collections::BTreeMap<String, u64> {
    let mut newest = std::collections::BTreeMap::new();
    let Ok(servers) = std::fs::read_dir(checkpoints) else {
        return newest;
    };
    for server in servers.flatten() {
        let name = server.file_name().to_string_lossy().to_string();
        let Some(node) = name.strip_prefix(&format!("{job}-")) else {
            continue;
        };
        let steps = std::fs::read_dir(server.path())
            .unwrap()
            .flatten()
            .filter_map(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .strip_prefix("step-")?
                    .parse::<u64>()
                    .ok()
            });
        if let Some(step) = steps.max() {
            newest.insert(node.to_owned(), step);
        }
    }
    newest
}

/// Issue 15, checkpoints: a run whose runner is SIGKILLed mid-training (every node dies with
/// it) is resumed with `--resume RUN_DIR`: each server starts from its newest checkpoint, not
/// from step 0, and the job completes; the final model is exported as `.npy`.
#[test]
fn a_killed_run_resumes_from_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let file = job(dir.path(), "local-resume", 100_000);
    let needle = file.to_string_lossy().to_string();
    let mut runner = Command::new(BINARY)
        .args(["local", "--no-progress", "--runs-dir"])
        .arg(&runs)
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until every server wrote a checkpoint at step 300 or later (every 100 steps by default).
    let deadline = Instant::now() + Duration::from_secs(120);
    let first_run = loop {
        assert!(
            Instant::now() < deadline,
            "no checkpoints at step 300 within 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
        let Some(run) = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut entries| entries.next())
        else {
            continue;
        };
        let run = run.unwrap().path();
        let newest = newest_checkpoints(&run.join("checkpoints"), "local-resume");
        if newest.len() == 5 && newest.values().all(|&step| step >= 300) {
            break run;
        }
    };
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert!(wait_until_gone(&needle, Duration::from_secs(10)).is_empty());
    let newest = newest_checkpoints(&first_run.join("checkpoints"), "local-resume");
    assert!(
        !first_run.join("summary.json").exists(),
        "the first run was cut short"
    );

    // The same job, now ending 200 steps after the newest checkpoint, resumed from the run.
    let furthest = *newest.values().max().unwrap();
    let steps = furthest + 200;
    let file = job(dir.path(), "local-resume", steps);
    let output = Command::new(BINARY)
        .args(["local", "--no-progress", "--runs-dir"])
        .arg(&runs)
        .arg("--resume")
        .arg(&first_run)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let second_run = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| *path != first_run)
        .unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(second_run.join("summary.json")).unwrap())
            .unwrap();
    // Every server started where its own newest checkpoint was.
    let resumed: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(summary["resumedAt"].clone()).unwrap();
    assert_eq!(resumed, newest, "{summary}");
    assert_eq!(summary["steps"], steps, "{summary}");
    assert!(
        summary["finalAccuracy"].as_f64().unwrap() >= 0.8,
        "{summary}"
    );
    // No server went through the early steps again (a gather at its own resumed step is fine).
    let earliest = *newest.values().min().unwrap();
    let csv = std::fs::read_to_string(second_run.join("metrics.csv")).unwrap();
    let server_steps: Vec<u64> = csv
        .lines()
        .skip(1)
        .filter(|line| line.contains(",server-"))
        .map(|line| line.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(!server_steps.is_empty());
    assert!(
        server_steps.iter().all(|&step| step >= earliest),
        "a server stepped below {earliest}: {:?}",
        server_steps.iter().min()
    );
    // The earlier run is left as it was; the final model is a plain .npy.
    assert_eq!(
        newest_checkpoints(&first_run.join("checkpoints"), "local-resume"),
        newest
    );
    let model = std::fs::read(second_run.join("checkpoints/local-resume-server-0/final/model.npy"))
        .unwrap();
    assert!(model.starts_with(b"\x93NUMPY"));
    assert!(wait_until_gone(&needle, Duration::from_secs(10)).is_empty());
}

#[test]
fn bad_manifests_fail_before_any_process_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("servers: {replicas: 4, byzantine: 1}", "n_ps ≥ 3·f_ps + 2"),
        ("workers: {replicas: 3, byzantine: 1}", "n_w ≥ 3·f_w + 1"),
        (
            "aggregation: {gradients: krumm}",
            "spec.aggregation.gradients",
        ),
        (
            "inject: [{role: worker, attack: sleepy}]",
            "spec.inject[0].attack",
        ),
        (
            "dataset: {name: fashion-mnist, path: /nonexistent/data}",
            "/nonexistent/data",
        ),
        (
            "convergence: {targetAccuracy: 0.8, maxDrift: 0}",
            "spec.convergence.maxDrift",
        ),
    ];
    for (index, (change, expected)) in cases.into_iter().enumerate() {
        let name = format!("bad-{index}");
        let path = dir.path().join(format!("{name}.yaml"));
        let key = change.split(':').next().unwrap();
        let mut spec = vec![
            "model: {kind: logistic}".to_owned(),
            "dataset: {name: synthetic}".to_owned(),
            "training: {steps: 10, learningRate: 0.05}".to_owned(),
            "servers: {replicas: 5, byzantine: 1}".to_owned(),
            "workers: {replicas: 4, byzantine: 1}".to_owned(),
        ];
        spec.retain(|line| !line.starts_with(key));
        spec.push(change.to_owned());
        let text = format!(
            "apiVersion: byzsgd.io/v1alpha1\nkind: ByzSGDJob\nmetadata: {{name: {name}}}\nspec:\n{}\n",
            spec.iter()
                .map(|line| format!("  {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::fs::write(&path, text).unwrap();
        let output = Command::new(BINARY)
            .args(["local", "--no-progress", "--runs-dir"])
            .arg(dir.path().join("runs"))
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{change} was accepted");
        assert!(
            stderr.contains(expected),
            "{change}: error does not name `{expected}`:\n{stderr}"
        );
        assert!(!dir.path().join("runs").exists(), "{change}: a run started");
        assert!(processes_mentioning(&path.to_string_lossy()).is_empty());
    }
}

/// Boolean flags read from the environment take what shells and CI systems write: `1`, `true`,
/// `yes`, `on` (and their negatives), not only clap's `true`/`false`.
#[test]
fn boolean_environment_variables_take_one_and_zero() {
    for value in ["1", "0", "yes", "off"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_byzsgd-node"))
            .args(["local", "/nonexistent/job.yaml"])
            .env("BYZSGD_NO_PROGRESS", value)
            .output()
            .expect("byzsgd-node runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains("cannot read manifest") && !stderr.contains("invalid value"),
            "BYZSGD_NO_PROGRESS={value}: {stderr}"
        );
    }
}
