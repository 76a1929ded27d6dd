//! The chart's dashboards and alert rules against a real Prometheus scraping a real job.
//!
//! Debian's `/usr/bin/prometheus` (package `prometheus`, installed by `scripts/setup --test`)
//! scrapes a real `byzsgd-node local` run with Byzantine servers and workers through the
//! `file_sd` targets the runner writes; then every PromQL expression of
//! `charts/byzsgd-operator/dashboards/*.json` and `charts/byzsgd-operator/rules/*.yaml` is
//! evaluated through the HTTP API, and each must return at least one series. `promtool` checks
//! the rule files and runs their unit tests. A missing binary fails the test, never skips it.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_byzsgd-node");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/byzsgd-operator");
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const INSTALL_HINT: &str = "install it with `scripts/setup --test` (Debian package prometheus)";

/// Namespace label the test's scrape config puts on every target, as the PodMonitor's
/// Kubernetes discovery does, so that `$namespace` is substituted by a real value.
const NAMESPACE: &str = "byzsgd-observability";
/// The ByzSGDJob's name: `$job`, and the `job_name` label of every target.
const JOB: &str = "observe";
/// Scrape interval of the test's Prometheus; `$__rate_interval` spans several scrapes.
const SCRAPE_INTERVAL: &str = "1s";
/// What Grafana would put for its interval variables at this scrape interval.
const GRAFANA_INTERVALS: [(&str, &str); 3] = [
    ("$__rate_interval", "10s"),
    ("$__interval", "2s"),
    ("$__range", "1m"),
];

/// Expressions that need the operator's own series (`byzsgd_operator_*`), which a local run
/// cannot produce: they are only checked to parse (the query API rejects a bad expression with
/// HTTP 400). Once the operator runs in a test cluster with Prometheus, move them to the full
/// check. The test fails if this list and the files disagree, so nothing slips through unchecked.
const NEEDS_OPERATOR: [&str; 2] = [
    "sum by (phase) (byzsgd_operator_jobs)",
    "max by (namespace) (byzsgd_operator_jobs{phase=\"Failed\"}) > 0",
];

/// Where an expression comes from, for failure messages.
#[derive(Debug, Clone)]
struct Query {
    origin: String,
    expr: String,
    /// The alert's name, for expressions of alert rules.
    alert: Option<String>,
}

fn chart_path(relative: &str) -> PathBuf {
    Path::new(CHART).join(relative)
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{extension} in {}", dir.display());
    files
}

fn dashboards() -> Vec<(String, Value)> {
    files_with_extension(&chart_path("dashboards"), "json")
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            (name, json)
        })
        .collect()
}

fn rule_files() -> Vec<PathBuf> {
    files_with_extension(&chart_path("rules"), "yaml")
}

/// Every `"expr"` string anywhere in a dashboard: panel targets and annotation queries.
fn collect_exprs(value: &Value, origin: &str, out: &mut Vec<Query>) {
    match value {
        Value::Object(map) => {
            let title = map.get("title").or_else(|| map.get("name"));
            let origin = match title.and_then(Value::as_str) {
                Some(title) => format!("{origin} / {title}"),
                None => origin.to_owned(),
            };
            for (key, child) in map {
                if key == "expr" {
                    let expr = child
                        .as_str()
                        .unwrap_or_else(|| panic!("{origin}: non-string expr"));
                    out.push(Query {
                        origin: origin.clone(),
                        expr: expr.to_owned(),
                        alert: None,
                    });
                } else {
                    collect_exprs(child, &origin, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_exprs(item, origin, out);
            }
        }
        _ => {}
    }
}

fn dashboard_queries() -> Vec<Query> {
    let mut queries = Vec::new();
    for (name, json) in dashboards() {
        collect_exprs(&json, &name, &mut queries);
    }
    queries
}

fn rule_queries() -> Vec<Query> {
    let mut queries = Vec::new();
    for path in rule_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for group in yaml["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let alert = rule["alert"].as_str().map(str::to_owned);
                let id = alert.as_deref().or_else(|| rule["record"].as_str());
                queries.push(Query {
                    origin: format!("{name} / {}", id.unwrap()),
                    expr: rule["expr"].as_str().unwrap().trim().to_owned(),
                    alert,
                });
            }
        }
    }
    queries
}

/// Replaces the dashboards' template variables by what Grafana would send for this run, and
/// fails on any variable the test does not know.
fn substitute(expr: &str) -> String {
    let mut out = expr
        .replace("$namespace", NAMESPACE)
        .replace("${namespace}", NAMESPACE)
        .replace("$job", JOB)
        .replace("${job}", JOB);
    for (variable, value) in GRAFANA_INTERVALS {
        out = out.replace(variable, value);
    }
    // `$1` (a label_replace capture group) is PromQL, not a Grafana variable.
    let leftover = out
        .match_indices('$')
        .map(|(at, _)| &out[at..])
        .find(|rest| !rest[1..].starts_with(|c: char| c.is_ascii_digit()));
    assert!(
        leftover.is_none(),
        "unknown template variable in `{expr}`: {leftover:?}"
    );
    out
}

/// Turns every comparison at the top level of `expr` into its `bool` form, so that an alert
/// condition (or an annotation filter) that is false on a healthy run still returns its series
/// (with value 0): that proves the series exist and the vector matching lines up, without
/// requiring the run to be unhealthy. Comparisons inside parentheses, brackets, braces and
/// strings are left alone.
fn with_bool_comparisons(expr: &str) -> String {
    let bytes = expr.as_bytes();
    let mut out = String::with_capacity(expr.len() + 10);
    let (mut depth, mut i) = (0_usize, 0);
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                out.push_str(&expr[start..=i.min(bytes.len() - 1)]);
                i += 1;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        let next = bytes.get(i + 1).copied();
        let operator_len = match (c, next) {
            (b'=' | b'!' | b'<' | b'>', Some(b'=')) => 2,
            (b'<' | b'>', _) => 1,
            _ => 0,
        };
        if depth == 0 && operator_len > 0 {
            out.push_str(&expr[i..i + operator_len]);
            i += operator_len;
            if !expr[i..].trim_start().starts_with("bool") {
                out.push_str(" bool");
            }
            continue;
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters pass through).
fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            write!(out, "%{byte:02X}").unwrap();
        }
    }
    out
}

/// A plain HTTP/1.0 GET (the server closes the connection, no chunking): returns status and body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A Prometheus server on a temp dir; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, targets: &Path) -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: {INSTALL_HINT}"
        );
        let config = dir.join("prometheus.yml");
        // The relabelling stands in for Kubernetes discovery, which gives the PodMonitor's
        // targets their namespace.
        std::fs::write(
            &config,
            format!(
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
        .unwrap();
        // A free port: bind to port 0, read it, release it for Prometheus.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {PROMETHEUS}: {e}"));
        let mut prometheus = Self { child, port, log };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(self.port, "/-/ready") {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Evaluates `expr` at `time` (Unix seconds): `Err` carries Prometheus' error for a bad
    /// expression.
    fn query(&self, expr: &str, time: f64) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}&time={time:.3}", encode(expr));
        let (status, body) = http_get(self.port, &path).map_err(|e| e.to_string())?;
        let json: Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, {e}: {body}"))?;
        if json["status"] != "success" {
            return Err(format!("HTTP {status}: {}", json["error"]));
        }
        Ok(json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Values of `label` on series matching `selector`, as Grafana's `label_values()` asks.
    fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let path = format!("/api/v1/label/{label}/values?match[]={}", encode(selector));
        let (status, body) = http_get(self.port, &path).unwrap();
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "success", "HTTP {status}: {body}");
        json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn describe(series: &[Value]) -> String {
    series
        .iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("    {{{}}} = {}", labels.join(", "), s["value"][1])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_comparisons_become_bool() {
    assert_eq!(with_bool_comparisons("a > 10"), "a > bool 10");
    assert_eq!(
        with_bool_comparisons("sum by (x) (up{r=\"s\"}) < on (x) count(up{r=~\"a|b\"}) - 1"),
        "sum by (x) (up{r=\"s\"}) < bool on (x) count(up{r=~\"a|b\"}) - 1"
    );
    assert_eq!(with_bool_comparisons("a == 0"), "a == bool 0");
    assert_eq!(with_bool_comparisons("a >= bool 0"), "a >= bool 0");
    // Nested comparisons and strings stay as they are.
    assert_eq!(
        with_bool_comparisons("count(x{a=\">\"} == 1)"),
        "count(x{a=\">\"} == 1)"
    );
    assert_eq!(with_bool_comparisons("rate(x[5m])"), "rate(x[5m])");
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

/// A query's result at the chosen instant: the query, the expression sent, the series.
type Evaluated = (Query, String, Vec<Value>);

/// Waits until Prometheus scraped every one of the `count` targets once a second for a whole
/// rate window, so that every `rate()` of the dashboards has samples of every node.
fn wait_for_scrapes(prometheus: &Prometheus, run: &mut Run, count: usize) {
    let window = GRAFANA_INTERVALS[0].1;
    let history = format!("min(count_over_time(up{{job_name=\"{JOB}\"}}[{window}]))");
    let live = format!("count(up{{job_name=\"{JOB}\"}} == 1)");
    let value = |expr: &str| {
        let series = prometheus.query(expr, now()).unwrap();
        series.first().map_or(0.0, |s| {
            s["value"][1].as_str().unwrap().parse::<f64>().unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    // One scrape a second: at least 8 samples of every target in the 10 s window.
    while value(&live) < count as f64 || value(&history) < 8.0 {
        assert!(
            run.child.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "the {count} targets were not all scraped for {window}\n{}\n{}",
            run.output(),
            prometheus.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Evaluates `queries` at one instant, again every 2 s until each returns a series (gathers,
/// exclusions and evaluations need a few steps), and returns that instant and the results. A
/// query that does not parse fails at once; one still empty when the run ends or after 4
/// minutes fails with the list of empty ones.
fn evaluate_until_every_query_returns(
    prometheus: &Prometheus,
    run: &mut Run,
    queries: &[Query],
) -> (f64, Vec<Evaluated>) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let at = now();
        let mut results = Vec::new();
        let mut empty = Vec::new();
        for query in queries {
            let expr = with_bool_comparisons(&substitute(&query.expr));
            match prometheus.query(&expr, at) {
                Ok(series) if series.is_empty() => empty.push(format!("{}: {expr}", query.origin)),
                Ok(series) => results.push((query.clone(), expr, series)),
                Err(error) => panic!("{}: `{expr}` does not evaluate: {error}", query.origin),
            }
        }
        if empty.is_empty() {
            return (at, results);
        }
        let running = run.child.try_wait().unwrap().is_none();
        assert!(
            running && Instant::now() < deadline,
            "{} expressions returned no series (run still going: {running}):\n{}\n\n{}\n\
             prometheus log:\n{}",
            empty.len(),
            empty.join("\n"),
            run.output(),
            prometheus.log_text()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
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
    for (query, _, series) in results.iter().filter(|(q, ..)| q.alert.is_some()) {
        let firing: BTreeSet<(String, String)> = series
            .iter()
            .filter(|s| s["value"][1] == "1")
            .map(|s| {
                let text = |key: &str| s["metric"][key].as_str().unwrap_or_default().to_owned();
                (text("node"), text("attack"))
            })
            .collect();
        if query.alert.as_deref() == Some("ByzSGDByzantineActivity") {
            assert_eq!(firing, injected, "{}: {}", query.origin, describe(series));
        } else {
            assert!(
                firing.is_empty(),
                "{} holds on a healthy run:\n{}",
                query.origin,
                describe(series)
            );
        }
    }
}

/// Every dashboard's `label_values()` variables resolve to this run's namespace and job.
fn assert_variables_resolve(prometheus: &Prometheus) {
    for (name, json) in dashboards() {
        for variable in json["templating"]["list"].as_array().unwrap() {
            let Some(query) = variable["query"]["query"].as_str() else {
                continue;
            };
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name}: variable query `{query}` is not label_values"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let values = prometheus.label_values(label.trim(), &substitute(selector.trim()));
            let expected = if label.trim() == "namespace" {
                NAMESPACE
            } else {
                JOB
            };
            assert!(
                values.iter().any(|v| v == expected),
                "{name}: `{query}` gives {values:?}, not {expected}"
            );
        }
    }
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
    let prometheus = Prometheus::start(dir.path(), &targets);

    let all: Vec<Query> = dashboard_queries()
        .into_iter()
        .chain(rule_queries())
        .collect();
    let (operator, node): (Vec<Query>, Vec<Query>) = all
        .into_iter()
        .partition(|q| q.expr.contains("byzsgd_operator_"));
    let operator_exprs: BTreeSet<&str> = operator.iter().map(|q| q.expr.as_str()).collect();
    assert_eq!(
        operator_exprs,
        NEEDS_OPERATOR.into_iter().collect::<BTreeSet<_>>(),
        "the expressions that need the operator changed: update NEEDS_OPERATOR"
    );

    wait_for_scrapes(
        &prometheus,
        &mut run,
        targets_json.as_array().unwrap().len(),
    );
    // Every value checked and printed below comes from the same instant.
    let (at, results) = evaluate_until_every_query_returns(&prometheus, &mut run, &node);
    assert_only_the_injection_alerts(&results, &targets_json);

    // The operator's expressions: they must parse and evaluate (to nothing, here).
    for query in &operator {
        let expr = with_bool_comparisons(&substitute(&query.expr));
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

    assert_variables_resolve(&prometheus);

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
