//! `byzsgd-exp` end to end, as a user runs it: scenarios written to a temporary directory, the
//! real binary, the real simulator and — for `--backend local` — real `byzsgd-node` processes
//! on loopback. Data: the node's seeded synthetic set, so each run takes well under a second of
//! compute.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::JOB;

fn exp(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byzsgd-exp"))
        .args(args)
        .current_dir(dir)
        .env("BYZSGD_NO_PROGRESS", "1")
        .output()
        .expect("byzsgd-exp starts")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).expect("scenario dir");
    std::fs::write(path.join("job.yaml"), JOB).expect("job");
    std::fs::write(path.join("scenario.yaml"), body).expect("scenario");
    path
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x89PNG"))
}

#[test]
fn a_sim_sweep_writes_tidy_csv_summary_plots_and_a_report_with_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(
        dir.path(),
        "demo",
        "name: demo
title: Demo sweep
job: job.yaml
grid:
  system:
    byzsgd: {}
    vanilla: {rule: average, modelRule: average}
  attack:
    none: {workerAttack: none}
    random: {workerAttack: {name: random, params: {scale: 100}}}
claims:
  - text: ByzSGD converges under both
    paper: Theorem 1
    check: {kind: atLeast, metric: final_accuracy, where: {system: byzsgd}, value: 0.3}
  - text: averaging survives random gradients
    paper: it does not
    check: {kind: atLeast, metric: final_accuracy, where: {system: vanilla, attack: random}, value: 0.3}
plots:
  - heatmap: {x: attack, y: system}
",
    );
    let output = exp(&["run", "demo", "--backend", "sim"], dir.path());
    assert!(output.status.success(), "{}", text(&output));
    let results = dir.path().join("demo/results");
    let tidy = std::fs::read_to_string(results.join("results.csv")).expect("results.csv");
    assert!(
        tidy.starts_with("run,step,node,role,metric,value\n"),
        "{tidy:.200}"
    );
    assert!(tidy.contains(",accuracy,"), "accuracy rows");
    assert!(tidy.contains(",max_correct_drift,"), "drift rows");
    let summary = std::fs::read_to_string(results.join("summary.csv")).expect("summary.csv");
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 5, "header and four runs:\n{summary}");
    assert!(
        lines[0].starts_with("run,system,attack,final_accuracy,"),
        "{}",
        lines[0]
    );
    assert!(lines[4].starts_with("r003,vanilla,random,"), "{}", lines[4]);
    for plot in [
        "accuracy_vs_step.png",
        "drift_vs_step.png",
        "heatmap_final_accuracy_attack_system.png",
    ] {
        assert!(is_png(&results.join(plot)), "{plot} is a PNG");
    }

    let report = dir.path().join("REPORT.md");
    let output = exp(&["report", "demo", "--out", "REPORT.md"], dir.path());
    assert!(output.status.success(), "{}", text(&output));
    let report = std::fs::read_to_string(report).expect("report");
    assert!(
        report.contains("| demo | ByzSGD converges under both | Theorem 1 |"),
        "{report}"
    );
    // The computed verdicts: ByzSGD holds; averaging under random gradients does not.
    assert!(report.contains("Claims: 1 hold, 1 do not"), "{report}");
    assert!(
        report.contains("(demo/results/accuracy_vs_step.png)"),
        "{report}"
    );
}

#[test]
fn broken_scenarios_are_refused_before_anything_runs_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "typo",
            "name: typo\ntitle: T\njob: job.yaml\ngird: {seed: [1]}\n",
            "gird",
        ),
        (
            "bad-axis",
            "name: bad-axis\ntitle: T\njob: job.yaml\ngrid: {colour: [red]}\n",
            "grid.colour",
        ),
        (
            "bad-claim",
            "name: bad-claim\ntitle: T\njob: job.yaml\ngrid: {seed: [1]}\nclaims:\n  - {text: t, paper: p, check: {kind: atLeast, metric: m, where: {sed: '1'}, value: 0}}\n",
            "sed",
        ),
        // The override is legal YAML but breaks the job: the node's validation names the field.
        (
            "bad-job",
            "name: bad-job\ntitle: T\njob: job.yaml\ngrid: {servers: [5, 3]}\n",
            "run r001 (servers=3)",
        ),
    ];
    for (name, body, expected) in cases {
        scenario(dir.path(), name, body);
        let output = exp(&["run", name, "--backend", "sim"], dir.path());
        let shown = text(&output);
        assert!(!output.status.success(), "{name} was accepted: {shown}");
        assert!(
            shown.contains(expected),
            "{name}: expected `{expected}` in {shown}"
        );
        assert!(
            !dir.path().join(name).join("results").exists(),
            "{name}: nothing ran"
        );
    }
}

#[test]
fn a_malformed_chaos_file_in_a_scenario_is_refused_naming_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario(
        dir.path(),
        "chaotic",
        "name: chaotic\ntitle: T\njob: job.yaml\nchaos: [bad.yaml]\n",
    );
    std::fs::write(
        path.join("bad.yaml"),
        "apiVersion: byzsgd.io/v1alpha1\nkind: ByzantineChaos\nmetadata: {name: bad}\nspec:\n  \
         job: tiny\n  role: worker\n  action: {kind: silence}\n  window: {fromStep: 5, untilSteps: 9}\n",
    )
    .expect("chaos");
    let output = exp(&["run", "chaotic", "--backend", "sim"], dir.path());
    let shown = text(&output);
    assert!(!output.status.success(), "{shown}");
    assert!(
        shown.contains("spec.window") && shown.contains("untilSteps"),
        "{shown}"
    );
}

#[test]
fn sim_chaos_arms_the_chosen_workers_for_their_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario(
        dir.path(),
        "armed",
        "name: armed\ntitle: T\njob: job.yaml\nchaos: [random.yaml]\ngrid:\n  rule: [mda, average]\n",
    );
    // Loud random gradients from two workers for steps 10..40: MDA shrugs them off, averaging
    // does not — so the chaos really reached the nodes.
    std::fs::write(
        path.join("random.yaml"),
        "apiVersion: byzsgd.io/v1alpha1\nkind: ByzantineChaos\nmetadata: {name: loud}\nspec:\n  \
         job: tiny\n  role: worker\n  selector: {mode: indices, indices: [0, 3]}\n  \
         action: {kind: attack, name: random, params: {scale: 1000}}\n  window: {fromStep: 10, untilStep: 40}\n",
    )
    .expect("chaos");
    let output = exp(&["run", "armed", "--backend", "sim"], dir.path());
    assert!(output.status.success(), "{}", text(&output));
    let summary = std::fs::read_to_string(path.join("results/summary.csv")).expect("summary.csv");
    let accuracy = |rule: &str| -> f64 {
        let line = summary
            .lines()
            .find(|l| l.split(',').nth(1) == Some(rule))
            .expect("row");
        line.split(',')
            .nth(2)
            .expect("accuracy")
            .parse()
            .expect("number")
    };
    assert!(accuracy("mda") >= 0.3, "{summary}");
    assert!(accuracy("average") < 0.3, "{summary}");
}

/// Needs the `byzsgd-node` executable next to `byzsgd-exp` (cargo builds it there when the
/// workspace's tests are built, as `scripts/test` does); fails, never skips, without it.
#[test]
fn a_local_sweep_runs_real_node_processes_and_measures_throughput_and_traffic() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_byzsgd-exp"));
    let node = exe.with_file_name("byzsgd-node");
    assert!(
        node.is_file(),
        "{} is missing: build the workspace's tests (`cargo test --workspace`) or \
         `cargo build -p byzsgd-node` first",
        node.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(
        dir.path(),
        "live",
        "name: live\ntitle: T\njob: job.yaml\ngrid:\n  steps: [60]\n",
    );
    let output = exp(&["run", "live", "--backend", "local"], dir.path());
    assert!(output.status.success(), "{}", text(&output));
    let summary =
        std::fs::read_to_string(dir.path().join("live/results/summary.csv")).expect("summary");
    let header: Vec<&str> = summary.lines().next().expect("header").split(',').collect();
    let row: Vec<&str> = summary.lines().nth(1).expect("row").split(',').collect();
    let value = |column: &str| -> f64 {
        let index = header.iter().position(|c| *c == column).expect("column");
        row[index].parse().unwrap_or(f64::NAN)
    };
    assert!((value("steps") - 60.0).abs() < 0.5, "{summary}");
    assert!(value("steps_per_second") > 0.0, "{summary}");
    // 2·n_ps·n_w = 70 model and gradient messages per step at least, plus gathers.
    assert!(value("messages_per_step") >= 60.0, "{summary}");
    assert!(value("bytes_per_step") > 0.0, "{summary}");
    let tidy =
        std::fs::read_to_string(dir.path().join("live/results/results.csv")).expect("results");
    assert!(tidy.contains(",time_s,"), "local runs have wall time");
}

/// Copies a scenario tree, leaving out raw run directories and figures.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "runs" {
                copy_tree(&path, &to.join(&name));
            }
        } else if path.extension().is_none_or(|e| e != "png") {
            std::fs::copy(&path, to.join(&name)).expect("copy");
        }
    }
}

/// `experiments/REPORT.md` is generated, never edited: regenerating it from the committed CSVs
/// must give the committed text byte for byte (the figures are drawn again on the way).
#[test]
fn the_committed_report_is_what_the_committed_csvs_give() {
    let experiments = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(experiments.join("REPORT.md")).expect("REPORT.md");
    let first = committed
        .lines()
        .find(|l| l.starts_with("Generated by `"))
        .expect("command line");
    let command = first
        .trim_start_matches("Generated by `")
        .split('`')
        .next()
        .expect("command");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(
        &experiments.join("paper"),
        &dir.path().join("experiments/paper"),
    );
    let title = committed
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .expect("title line");
    let output = exp(
        &[
            "report",
            "experiments/paper",
            "--out",
            "experiments/REPORT.md",
            "--title",
            title,
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        command.contains("experiments/paper --out experiments/REPORT.md"),
        "{command}"
    );
    let regenerated =
        std::fs::read_to_string(dir.path().join("experiments/REPORT.md")).expect("regenerated");
    assert!(
        regenerated == committed,
        "experiments/REPORT.md is stale: run `{command}`"
    );
}
