//! The chart's dashboards and alert rules against a real Prometheus scraping a real job.
//!
//! Debian's `/usr/bin/prometheus` (package `prometheus`, installed by `scripts/setup --test`)
//! scrapes a real `byzsgd-node local` run with Byzantine servers and workers through the
//! `file_sd` targets the runner writes; then every PromQL expression of
//! `charts/byzsgd-operator/dashboards/*.json` and `charts/byzsgd-operator/rules/*.yaml` is
//! evaluated through the HTTP API, and each must return at least one series. `promtool` checks
//! the rule files and runs their unit tests. A missing binary fails the test, never skips it.
//!
//! The query extraction and checks (`e2e/src/promql.rs`) and the Prometheus harness
//! (`e2e/src/prometheus.rs`) are shared with the tier-c test `e2e/tests/readme.rs`, which runs
//! the same checks against the operator and job pods in a cluster.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

#[path = "../../e2e/src/prometheus.rs"]
mod prometheus;
#[path = "../../e2e/src/promql.rs"]
mod promql;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use prometheus::{INSTALL_HINT, PROMTOOL, Prometheus};
use promql::{
    Evaluated, Query, Variables, all_queries, assert_only_byzantine_activity_fires,
    assert_variables_resolve, chart_path, dashboards, describe, evaluate_until_every_query_returns,
    files_with_extension, rule_files, rule_queries, sendable, wait_for_scrapes,
};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_byzsgd-node");

/// Namespace label the test's scrape config puts on every target, as the PodMonitor's
/// Kubernetes discovery does, so that `$namespace` is substituted by a real value.
const NAMESPACE: &str = "byzsgd-observability";
/// The ByzSGDJob's name: `$job`, and the `job_name` label of every target.
const JOB: &str = "observe";
/// Scrape interval of the test's Prometheus; `$__rate_interval` spans several scrapes.
const SCRAPE_INTERVAL: &str = "1s";

/// What Grafana would put for the dashboards' variables at this scrape interval.
fn variables() -> Variables {
    Variables {
        namespace: NAMESPACE.to_owned(),
        job: JOB.to_owned(),
        intervals: [
            ("$__rate_interval", "10s".to_owned()),
            ("$__interval", "2s".to_owned()),
            ("$__range", "1m".to_owned()),
        ],
    }
}

/// Expressions that need the operator's own series (`byzsgd_operator_*`), which a local run
/// cannot produce: they are only checked to parse (the query API rejects a bad expression with
/// HTTP 400). The tier-c test `e2e/tests/readme.rs` evaluates them, with every other
/// expression, against Prometheus scraping the operator and job pods in a cluster. The test
/// fails if this list and the files disagree, so nothing slips through unchecked.
const NEEDS_OPERATOR: [&str; 2] = [
    "sum by (phase) (byzsgd_operator_jobs)",
    "max by (namespace) (byzsgd_operator_jobs{phase=\"Failed\"}) > 0",
];

/// Starts Prometheus on `dir` scraping the runner's `file_sd` targets once a second. The
/// relabelling stands in for Kubernetes discovery, which gives the PodMonitor's targets their
/// namespace.
fn start_prometheus(dir: &Path, targets: &Path) -> Prometheus {
    Prometheus::start(
        dir,
        &format!(
            "global:
  scrape_interval: {SCRAPE_INTERVAL}
  scrape_timeout: 900ms
  evaluation_interval: {SCRAPE_INTERVAL}
scrape_configs:
  - job_name: byzsgd
    file_sd_configs:
      - files: [{targets}]
        refresh_interval: 1s
    relabel_configs:
      - target_label: namespace
        replacement: {NAMESPACE}
",
            targets = targets.display()
        ),
    )
}

/// The local runner; killed on drop (its children exit with it, see tests/local.rs).
struct Run {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Run {
    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a small job with a Byzantine server (equivocating) and a Byzantine worker (ALIE) on
/// the synthetic data set, as tests/local.rs does. A few hundred steps take seconds, less than
/// the scrapes need, so the job gets more steps than it can finish and is interrupted (Ctrl-C,
/// which the runner handles like a user's) once the queries are done.
fn start_run(dir: &Path, steps: u64) -> Run {
    let file = dir.join(format!("{JOB}.yaml"));
    std::fs::write(
        &file,
        format!(
            "apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {{name: {JOB}}}
spec:
  model: {{kind: logistic}}
  dataset: {{name: synthetic}}
  training: {{steps: {steps}, batchSize: 16, learningRate: 0.05, seed: 3, evaluateEvery: 20}}
  servers: {{replicas: 5, byzantine: 1, gatherEvery: 5}}
  workers: {{replicas: 4, byzantine: 1}}
  inject:
    - {{role: server, count: 1, attack: equivocate}}
    - {{role: worker, count: 1, attack: alie}}
"
        ),
    )
    .unwrap();
    let (stdout, stderr) = (dir.join("run.stdout"), dir.join("run.stderr"));
    let child = Command::new(BINARY)
        .args(["local", "--no-progress", "--runs-dir"])
        .arg(dir.join("runs"))
        .arg(&file)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Run {
        child,
        stdout,
        stderr,
    }
}

fn wait_for_targets(dir: &Path, run: &mut Run) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = std::fs::read_dir(dir.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("targets.json"))
            .find(|path| path.exists());
        if let Some(path) = found {
            return path;
        }
        if let Some(status) = run.child.try_wait().unwrap() {
            panic!(
                "the run exited ({status}) before writing targets.json\n{}",
                run.output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no targets.json within 60 s\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dashboards_are_well_formed() {
    let mut uids = BTreeSet::new();
    for (name, json) in dashboards() {
        let uid = json["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no uid"));
        assert!(uids.insert(uid.to_owned()), "{name}: uid {uid} used twice");
        assert!(json["title"].as_str().is_some(), "{name}: no title");
        let variables: BTreeMap<&str, &Value> = json["templating"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no templating list"))
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        assert_eq!(
            variables.keys().copied().collect::<Vec<_>>(),
            ["datasource", "job", "namespace"],
            "{name}: template variables"
        );
        assert_eq!(variables["datasource"]["type"], "datasource");
        assert_eq!(variables["datasource"]["query"], "prometheus");
        let panels = json["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{name}: no panels");
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?");
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name} / {title}: panel data source is not the variable"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name} / {title}: no queries");
            for target in targets {
                let expr = target["expr"].as_str().unwrap();
                assert!(
                    expr.contains("$job") || expr.contains("byzsgd_operator_"),
                    "{name} / {title}: `{expr}` ignores the job variable"
                );
            }
        }
    }
}

#[test]
fn promtool_checks_the_rules_and_unit_tests_every_alert() {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: {INSTALL_HINT}"
    );
    let rules = rule_files();
    let check = Command::new(PROMTOOL)
        .args(["check", "rules"])
        .args(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // Every alert needs a unit test that sees it firing and one that sees it silent.
    let tests = files_with_extension(&chart_path("rules/tests"), "yaml");
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for path in &tests {
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for test in yaml["tests"].as_sequence().unwrap() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let alert = case["alertname"].as_str().unwrap().to_owned();
                let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
                if expected == 0 {
                    silent.insert(alert);
                } else {
                    firing.insert(alert);
                }
            }
        }
    }
    let alerts: BTreeSet<String> = rule_queries().into_iter().filter_map(|q| q.alert).collect();
    assert_eq!(alerts.len(), 6, "the six alerts of the issue: {alerts:?}");
    for alert in &alerts {
        assert!(firing.contains(alert), "no unit test sees {alert} firing");
        assert!(silent.contains(alert), "no unit test sees {alert} silent");
    }

    let test = Command::new(PROMTOOL)
        .args(["test", "rules"])
        .args(&tests)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(test.status.success(), "promtool test rules:\n{report}");
    assert_eq!(
        report.matches("SUCCESS").count(),
        tests.len(),
        "one SUCCESS per test file:\n{report}"
    );
}

/// On a healthy run every alert condition is false, except the Byzantine one, which holds for
/// exactly the nodes the runner made Byzantine (the `attack` labels of targets.json).
fn assert_only_the_injection_alerts(results: &[Evaluated], targets: &Value) {
    let injected: BTreeSet<(String, String)> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|group| &group["labels"])
        .filter(|labels| labels["byzantine"] == "true")
        .map(|labels| {
            let text = |key: &str| labels[key].as_str().unwrap().to_owned();
            (text("node"), text("attack"))
        })
        .collect();
    assert_eq!(
        injected.len(),
        2,
        "one Byzantine server and one worker: {targets}"
    );
    assert_only_byzantine_activity_fires(results, &injected);
}

/// Interrupts the run as a user would (Ctrl-C) and checks it ends cleanly, having noticed.
fn stop_run(run: &mut Run, targets: &Path) {
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the run ended early\n{}",
        run.output()
    );
    let kill = Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the run ignored Ctrl-C\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "the run failed\n{}", run.output());
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(targets.with_file_name("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["interrupted"], true, "{summary}");
}

#[test]
fn every_dashboard_and_alert_query_returns_series_from_a_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = start_run(dir.path(), 10_000_000);
    let targets = wait_for_targets(dir.path(), &mut run);
    let targets_json: Value =
        serde_json::from_str(&std::fs::read_to_string(&targets).unwrap()).unwrap();
    let prometheus = start_prometheus(dir.path(), &targets);
    let variables = variables();

    let (operator, node): (Vec<Query>, Vec<Query>) =
        all_queries().into_iter().partition(Query::needs_operator);
    let operator_exprs: BTreeSet<&str> = operator.iter().map(|q| q.expr.as_str()).collect();
    assert_eq!(
        operator_exprs,
        NEEDS_OPERATOR.into_iter().collect::<BTreeSet<_>>(),
        "the expressions that need the operator changed: update NEEDS_OPERATOR"
    );

    let mut alive = || match run.child.try_wait() {
        Ok(None) => Ok(()),
        _ => Err(format!("the run ended\n{}", run.output())),
    };
    // One scrape a second: at least 8 samples of every target in the 10 s rate window.
    wait_for_scrapes(
        &prometheus,
        &format!("job_name=\"{JOB}\""),
        targets_json.as_array().unwrap().len(),
        (variables.rate_interval(), 8),
        Duration::from_secs(240),
        &mut alive,
    );
    // Every value checked and printed below comes from the same instant.
    let (at, results) = evaluate_until_every_query_returns(
        &prometheus,
        &node,
        &variables,
        Duration::from_secs(240),
        &mut alive,
    );
    assert_only_the_injection_alerts(&results, &targets_json);

    // The operator's expressions: they must parse and evaluate (to nothing, here).
    for query in &operator {
        let expr = sendable(query, &variables);
        let series = prometheus
            .query(&expr, at)
            .unwrap_or_else(|e| panic!("{}: `{expr}` does not parse: {e}", query.origin));
        assert!(series.is_empty(), "{}: no operator runs here", query.origin);
    }
    // A typo'd expression must fail that check, or it proves nothing.
    assert!(
        prometheus
            .query("sum by (phase (byzsgd_operator_jobs)", at)
            .is_err()
    );

    assert_variables_resolve(&prometheus, &variables);

    // The numbers quoted in the note: the job overview, and the alerts, at one instant.
    println!("job overview dashboard at {at:.0} (job {JOB}):");
    for (query, expr, series) in &results {
        if query.origin.starts_with("byzsgd-job-overview.json") {
            println!("  {}\n  {expr}\n{}", query.origin, describe(series));
        }
    }
    println!("alert expressions (with bool), at the same instant:");
    for (query, expr, series) in &results {
        if query.alert.is_some() {
            println!("  {}\n  {expr}\n{}", query.origin, describe(series));
        }
    }
    println!(
        "{} node expressions returned series; {} operator expressions parsed",
        results.len(),
        operator.len()
    );

    // Scraping did not disturb the run: it is still going, and stops cleanly on Ctrl-C.
    stop_run(&mut run, &targets);
}
