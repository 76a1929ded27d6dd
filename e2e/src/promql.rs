//! The chart's PromQL and how a test proves it: every expression of
//! `charts/byzsgd-operator/dashboards/*.json` and `charts/byzsgd-operator/rules/*.yaml`, the
//! Grafana variables substituted as Grafana would, alert comparisons turned into their `bool`
//! form, evaluated against a real [`Prometheus`] until each returns at least one series.
//!
//! Shared, not copied: `node/tests/observability.rs` (a local run) and the tier-c tests (pods
//! in the testbed) include this same file, the first with `#[path]`, next to
//! `prometheus.rs`, which it reaches as `super::prometheus`. Only the standard library,
//! `serde_json` and `serde_yaml_ng`.

// Each includer uses a different subset; in a test binary these items are private.
#![allow(dead_code, unreachable_pub)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::prometheus::{Prometheus, now};

/// The chart, found from the including crate (node/ and e2e/ both sit in the workspace root).
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/byzsgd-operator");

/// Where an expression comes from, for failure messages.
#[derive(Debug, Clone)]
pub struct Query {
    /// File and panel (or rule) it comes from.
    pub origin: String,
    /// The expression as written in the chart.
    pub expr: String,
    /// The alert's name, for expressions of alert rules.
    pub alert: Option<String>,
}

impl Query {
    /// Whether the expression reads the operator's own series (`byzsgd_operator_*`).
    pub fn needs_operator(&self) -> bool {
        self.expr.contains("byzsgd_operator_")
    }
}

/// What Grafana puts for the dashboards' variables.
#[derive(Debug, Clone)]
pub struct Variables {
    /// `$namespace`: the job's namespace.
    pub namespace: String,
    /// `$job`: the ByzSGDJob's name.
    pub job: String,
    /// `$__rate_interval`, `$__interval`, `$__range`, as Grafana derives them from the data
    /// source's scrape interval.
    pub intervals: [(&'static str, String); 3],
}

impl Variables {
    /// Grafana's values for a data source scraped every `scrape` (a Prometheus duration such
    /// as `15s`): `$__rate_interval` = 4 × scrape (Grafana's floor for it), `$__interval` =
    /// scrape, `$__range` = `range`.
    pub fn for_scrape_interval(namespace: &str, job: &str, scrape: Duration, range: &str) -> Self {
        let seconds = scrape.as_secs().max(1);
        Self {
            namespace: namespace.to_owned(),
            job: job.to_owned(),
            intervals: [
                ("$__rate_interval", format!("{}s", 4 * seconds)),
                ("$__interval", format!("{seconds}s")),
                ("$__range", range.to_owned()),
            ],
        }
    }

    /// The rate window, for waits that need a full one of samples.
    pub fn rate_interval(&self) -> &str {
        &self.intervals[0].1
    }
}

/// `relative` inside the chart.
pub fn chart_path(relative: &str) -> PathBuf {
    Path::new(CHART).join(relative)
}

/// The files of `dir` ending in `.extension`, sorted; panics if there is none.
pub fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{extension} in {}", dir.display());
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every dashboard: file name and JSON.
pub fn dashboards() -> Vec<(String, Value)> {
    files_with_extension(&chart_path("dashboards"), "json")
        .into_iter()
        .map(|path| {
            let name = file_name(&path);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            (name, json)
        })
        .collect()
}

/// The alert rule files.
pub fn rule_files() -> Vec<PathBuf> {
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

/// Every expression of every dashboard.
pub fn dashboard_queries() -> Vec<Query> {
    let mut queries = Vec::new();
    for (name, json) in dashboards() {
        collect_exprs(&json, &name, &mut queries);
    }
    queries
}

/// Every rule's expression (alerts and recording rules).
pub fn rule_queries() -> Vec<Query> {
    let mut queries = Vec::new();
    for path in rule_files() {
        let name = file_name(&path);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let groups = yaml["groups"].as_sequence().cloned().unwrap_or_default();
        for group in &groups {
            let rules = group["rules"].as_sequence().cloned().unwrap_or_default();
            for rule in &rules {
                let alert = rule["alert"].as_str().map(str::to_owned);
                let id = alert
                    .as_deref()
                    .or_else(|| rule["record"].as_str())
                    .unwrap_or("?");
                let expr = rule["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name} / {id}: no expr"));
                queries.push(Query {
                    origin: format!("{name} / {id}"),
                    expr: expr.trim().to_owned(),
                    alert,
                });
            }
        }
    }
    queries
}

/// Every dashboard and rule expression.
pub fn all_queries() -> Vec<Query> {
    dashboard_queries()
        .into_iter()
        .chain(rule_queries())
        .collect()
}

/// Replaces the dashboards' template variables by what Grafana would send, and fails on any
/// variable it does not know.
pub fn substitute(expr: &str, variables: &Variables) -> String {
    let mut out = expr
        .replace("${namespace}", &variables.namespace)
        .replace("$namespace", &variables.namespace)
        .replace("${job}", &variables.job)
        .replace("$job", &variables.job);
    for (variable, value) in &variables.intervals {
        out = out.replace(variable, value);
    }
    let leftover = unknown_variable(&out);
    assert!(
        leftover.is_none(),
        "unknown template variable in `{expr}`: {leftover:?}"
    );
    out
}

/// The first `$…` left in `expr` that is not a `label_replace` capture group (`$1`): a Grafana
/// variable nobody substituted.
pub fn unknown_variable(expr: &str) -> Option<&str> {
    expr.match_indices('$')
        .map(|(at, _)| &expr[at..])
        .find(|rest| !rest[1..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Turns every comparison at the top level of `expr` into its `bool` form, so that an alert
/// condition (or an annotation filter) that is false on a healthy run still returns its series
/// (with value 0): that proves the series exist and the vector matching lines up, without
/// requiring the run to be unhealthy. Comparisons inside parentheses, brackets, braces and
/// strings are left alone.
pub fn with_bool_comparisons(expr: &str) -> String {
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
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
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

/// The form a query is sent in: variables substituted, top-level comparisons as `bool`.
pub fn sendable(query: &Query, variables: &Variables) -> String {
    with_bool_comparisons(&substitute(&query.expr, variables))
}

/// One line per series: its labels, sorted, and its value.
pub fn describe(series: &[Value]) -> String {
    series
        .iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = s["metric"]
                .as_object()
                .map(|metric| {
                    metric
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("    {{{}}} = {}", labels.join(", "), s["value"][1])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A query's result at the chosen instant: the query, the expression sent, the series.
pub type Evaluated = (Query, String, Vec<Value>);

/// Waits until `count` targets whose `up` series match `selector` (e.g. `job_name="x"`) are
/// up, each scraped at least `samples` times within the last `window`, so that every `rate()`
/// over that window has samples of every target and an alert comparing the window's first and
/// last samples sees the run's progress. `alive` as for
/// [`evaluate_until_every_query_returns`].
pub fn wait_for_scrapes(
    prometheus: &Prometheus,
    selector: &str,
    count: usize,
    (window, samples): (&str, usize),
    patience: Duration,
    alive: &mut dyn FnMut() -> Result<(), String>,
) {
    let history = format!("min(count_over_time(up{{{selector}}}[{window}]))");
    let live = format!("count(up{{{selector}}} == 1)");
    let deadline = Instant::now() + patience;
    loop {
        let (up, scraped) = (
            prometheus.scalar(&live, now()),
            prometheus.scalar(&history, now()),
        );
        if up >= count as f64 && scraped >= samples as f64 {
            return;
        }
        let state = alive();
        assert!(
            state.is_ok() && Instant::now() < deadline,
            "the {count} targets {{{selector}}} were not all scraped {samples} times in {window} \
             ({up} up, at least {scraped} samples each; {}):\n{}",
            state.err().unwrap_or_else(|| format!("after {patience:?}")),
            prometheus.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Evaluates every query at `at`: the ones that returned series, and the sent expressions of
/// those that returned none. A query that does not evaluate fails at once.
pub fn evaluate_at(
    prometheus: &Prometheus,
    queries: &[Query],
    variables: &Variables,
    at: f64,
) -> (Vec<Evaluated>, Vec<String>) {
    let mut results = Vec::new();
    let mut empty = Vec::new();
    for query in queries {
        let expr = sendable(query, variables);
        match prometheus.query(&expr, at) {
            Ok(series) if series.is_empty() => empty.push(format!("{}: {expr}", query.origin)),
            Ok(series) => results.push((query.clone(), expr, series)),
            Err(error) => panic!("{}: `{expr}` does not evaluate: {error}", query.origin),
        }
    }
    (results, empty)
}

/// Evaluates `queries` at one instant, again every 2 s until each returns a series, and returns
/// that instant and the results. A query that does not parse fails at once; `alive` is asked
/// between rounds and its `Err` (the run ended, with its output) fails the call, as does a
/// query still empty after `patience`, with the list of empty ones.
pub fn evaluate_until_every_query_returns(
    prometheus: &Prometheus,
    queries: &[Query],
    variables: &Variables,
    patience: Duration,
    alive: &mut dyn FnMut() -> Result<(), String>,
) -> (f64, Vec<Evaluated>) {
    let deadline = Instant::now() + patience;
    loop {
        let at = now();
        let (results, empty) = evaluate_at(prometheus, queries, variables, at);
        if empty.is_empty() {
            return (at, results);
        }
        let state = alive();
        assert!(
            state.is_ok() && Instant::now() < deadline,
            "{} expressions returned no series ({}):\n{}\n\nprometheus log:\n{}",
            empty.len(),
            state.err().unwrap_or_else(|| format!("after {patience:?}")),
            empty.join("\n"),
            prometheus.log_text()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Every dashboard's `label_values()` variables resolve to `variables`' namespace and job.
pub fn assert_variables_resolve(prometheus: &Prometheus, variables: &Variables) {
    for (name, json) in dashboards() {
        let list = json["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for variable in &list {
            let Some(query) = variable["query"]["query"].as_str() else {
                continue;
            };
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name}: variable query `{query}` is not label_values"));
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("{name}: `{query}` has no label"));
            let values =
                prometheus.label_values(label.trim(), &substitute(selector.trim(), variables));
            let expected = if label.trim() == "namespace" {
                &variables.namespace
            } else {
                &variables.job
            };
            assert!(
                values.iter().any(|v| v == expected),
                "{name}: `{query}` gives {values:?}, not {expected}"
            );
        }
    }
}

/// The alert names of the rule files.
pub fn alerts() -> BTreeSet<String> {
    rule_queries().into_iter().filter_map(|q| q.alert).collect()
}

/// On a healthy run every evaluated alert condition is false, except
/// `ByzSGDByzantineActivity`, which holds for exactly the `injected` (node, attack) pairs.
pub fn assert_only_byzantine_activity_fires(
    results: &[Evaluated],
    injected: &BTreeSet<(String, String)>,
) {
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
            assert_eq!(&firing, injected, "{}: {}", query.origin, describe(series));
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn grafana_variables_are_substituted_and_unknown_ones_refused() {
        let variables = Variables::for_scrape_interval("ns", "j", Duration::from_secs(15), "1h");
        assert_eq!(
            substitute(
                "rate(x{namespace=~\"$namespace\", job_name=~\"${job}\"}[$__rate_interval])",
                &variables
            ),
            "rate(x{namespace=~\"ns\", job_name=~\"j\"}[60s])"
        );
        assert_eq!(
            substitute(
                "label_replace(a, \"p\", \"$1\", \"n\", \"(.*)\")",
                &variables
            ),
            "label_replace(a, \"p\", \"$1\", \"n\", \"(.*)\")"
        );
        assert_eq!(unknown_variable("x[$__unknown]"), Some("$__unknown]"));
        assert_eq!(unknown_variable("label_replace(a, \"p\", \"$1\")"), None);
    }

    #[test]
    fn the_chart_has_dashboard_and_rule_queries() {
        let queries = all_queries();
        assert!(queries.iter().any(|q| q.alert.is_some()));
        assert!(queries.iter().any(Query::needs_operator));
        assert!(queries.len() > 20, "{} queries", queries.len());
    }
}
