//! The sweep's files, the stable interface between running, plotting and reporting (a notebook
//! can read them too): `results.csv`, tidy, one row per (run, step, node, role, metric, value);
//! and `summary.csv`, one row per run: `run`, then one column per grid axis (the run's label),
//! then one column per summary metric (empty when the backend does not measure it).

use std::{collections::BTreeMap, path::Path};

use anyhow::Context;
use byzsgd_api::job::status::median;
use serde::{Deserialize, Serialize};

/// Tidy results file name.
pub const RESULTS_CSV: &str = "results.csv";
/// Summary file name.
pub const SUMMARY_CSV: &str = "summary.csv";

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TidyRow {
    /// Run id (`r000`…).
    pub run: String,
    /// Training step.
    pub step: u64,
    /// `server-0`, `worker-3`, or `job` for whole-job measurements.
    pub node: String,
    /// `server`, `worker` or `job`.
    pub role: String,
    /// Metric name (see [`metric`]).
    pub metric: String,
    /// Value.
    pub value: f64,
}

impl TidyRow {
    /// A measurement of `metric` by `node` (of `role`) at `step` of `run`.
    pub fn new(run: &str, step: u64, node: &str, role: &str, metric: &str, value: f64) -> Self {
        Self {
            run: run.to_owned(),
            step,
            node: node.to_owned(),
            role: role.to_owned(),
            metric: metric.to_owned(),
            value,
        }
    }
}

/// Metric names used in `results.csv`.
pub mod metric {
    /// Training loss of a server (mean loss its workers reported).
    pub const LOSS: &str = "loss";
    /// Test accuracy of a server.
    pub const ACCURACY: &str = "accuracy";
    /// Seconds since training started (wall time, or virtual time for `sim`) at that step.
    pub const TIME: &str = "time_s";
    /// Largest distance between correct servers' models (role `job`).
    pub const DRIFT: &str = "max_correct_drift";
    /// The same distance right after a gather (role `job`).
    pub const DRIFT_AFTER_GATHER: &str = "max_correct_drift_after_gather";
    /// A server's distance to the median it adopted at a gather.
    pub const DRIFT_TO_MEDIAN: &str = "drift_to_median";
}

/// Summary columns, in file order.
pub const SUMMARY_METRICS: &[&str] = &[
    "final_accuracy",
    "max_drift",
    "gather_contraction",
    "steps",
    "steps_to_target",
    "steps_per_second",
    "time_to_target_s",
    "wall_s",
    "startup_s",
    "converged",
    "messages_per_step",
    "bytes_per_step",
];

/// One run's summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryRow {
    /// Run id.
    pub run: String,
    /// Axis → label.
    pub labels: BTreeMap<String, String>,
    /// Metric → value (absent: not measured).
    pub metrics: BTreeMap<String, f64>,
}

impl SummaryRow {
    /// A metric's value, if measured and finite.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied().filter(|v| v.is_finite())
    }

    /// Sets a metric when it has a value.
    pub fn set(&mut self, name: &str, value: Option<f64>) {
        if let Some(value) = value {
            self.metrics.insert(name.to_owned(), value);
        }
    }
}

/// The median of `metric` over nodes, per (run, step): how a sweep turns per-server reports
/// into one series per run.
pub fn median_by_step<'a>(rows: &'a [TidyRow], metric: &str) -> BTreeMap<(&'a str, u64), f64> {
    let mut grouped: BTreeMap<(&str, u64), Vec<f64>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.metric == metric) {
        grouped
            .entry((row.run.as_str(), row.step))
            .or_default()
            .push(row.value);
    }
    grouped
        .into_iter()
        .filter_map(|(key, values)| Some((key, median(values)?)))
        .collect()
}

/// Appends tidy rows to an open CSV writer.
pub fn write_tidy<W: std::io::Write>(
    writer: &mut csv::Writer<W>,
    rows: &[TidyRow],
) -> anyhow::Result<()> {
    for row in rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    Ok(())
}

/// Reads `results.csv`.
pub fn read_tidy(path: &Path) -> anyhow::Result<Vec<TidyRow>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(line, row)| {
            row.with_context(|| format!("{}: row {} is malformed", path.display(), line + 2))
        })
        .collect()
}

/// Writes `summary.csv` with the given axes as label columns.
pub fn write_summary(path: &Path, axes: &[String], rows: &[SummaryRow]) -> anyhow::Result<()> {
    let mut writer =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut header = vec!["run".to_owned()];
    header.extend(axes.iter().cloned());
    header.extend(SUMMARY_METRICS.iter().map(|m| (*m).to_owned()));
    writer.write_record(&header)?;
    for row in rows {
        let mut record = vec![row.run.clone()];
        record.extend(
            axes.iter()
                .map(|a| row.labels.get(a).cloned().unwrap_or_default()),
        );
        record.extend(SUMMARY_METRICS.iter().map(|m| {
            row.metrics
                .get(*m)
                .map(|v| format!("{v}"))
                .unwrap_or_default()
        }));
        writer.write_record(&record)?;
    }
    writer.flush()?;
    Ok(())
}

/// Reads `summary.csv`: every column that is not `run` or a summary metric is an axis.
pub fn read_summary(path: &Path) -> anyhow::Result<Vec<SummaryRow>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let mut rows = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record =
            record.with_context(|| format!("{}: row {} is malformed", path.display(), line + 2))?;
        let mut row = SummaryRow::default();
        for (column, cell) in header.iter().zip(record.iter()) {
            if column == "run" {
                cell.clone_into(&mut row.run);
            } else if SUMMARY_METRICS.contains(&column.as_str()) {
                if !cell.is_empty() {
                    let value: f64 = cell.parse().with_context(|| {
                        format!(
                            "{}: row {}, column {column}: `{cell}` is not a number",
                            path.display(),
                            line + 2
                        )
                    })?;
                    row.metrics.insert(column.clone(), value);
                }
            } else {
                row.labels.insert(column.clone(), cell.to_owned());
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_round_trips_with_missing_metrics_left_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SUMMARY_CSV);
        let mut row = SummaryRow {
            run: "r000".to_owned(),
            ..SummaryRow::default()
        };
        row.labels.insert("attack".to_owned(), "alie".to_owned());
        row.set("final_accuracy", Some(0.85));
        row.set("time_to_target_s", None);
        write_summary(&path, &["attack".to_owned()], std::slice::from_ref(&row)).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("run,attack,final_accuracy,"), "{text}");
        assert_eq!(read_summary(&path).expect("read back"), vec![row]);
    }

    #[test]
    fn a_malformed_summary_names_row_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SUMMARY_CSV);
        std::fs::write(&path, "run,final_accuracy\nr000,high\n").expect("write");
        let error = format!("{:#}", read_summary(&path).expect_err("bad number"));
        assert!(error.contains("row 2, column final_accuracy"), "{error}");
    }
}
