//! Claims a scenario makes and how the report judges them from `summary.csv`: a bound on a
//! metric over chosen runs (`atLeast`, `atMost`), or a ratio of two groups' means (e.g. vanilla
//! throughput over ByzSGD throughput), optionally per label of an axis. The verdict is computed,
//! never written by hand; the scenario only states the claim, the paper's figure and the bound.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Deserialize;
use serde_yaml_ng::Mapping;

use crate::results::SummaryRow;

/// One claim of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Claim {
    /// The claim, as the report states it.
    pub text: String,
    /// What the paper reports for it (figure, number).
    pub paper: String,
    /// How the results decide it.
    pub check: Check,
}

/// Runs whose labels match every (axis, label) pair.
pub type Filter = BTreeMap<String, String>;

/// How a claim is decided.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Check {
    /// The matching runs' `metric`, reduced by `aggregate` (default `min`: every run), is
    /// ≥ `value`.
    AtLeast {
        /// Summary column.
        metric: String,
        /// Which runs.
        #[serde(default, rename = "where")]
        filter: Filter,
        /// The bound.
        value: f64,
        /// How the runs' values are reduced (default `min`).
        #[serde(default)]
        aggregate: Option<Aggregate>,
    },
    /// The matching runs' `metric`, reduced by `aggregate` (default `max`: every run), is
    /// ≤ `value`.
    AtMost {
        /// Summary column.
        metric: String,
        /// Which runs.
        #[serde(default, rename = "where")]
        filter: Filter,
        /// The bound.
        value: f64,
        /// How the runs' values are reduced (default `max`).
        #[serde(default)]
        aggregate: Option<Aggregate>,
    },
    /// mean(`metric` over `numerator`) / mean(`metric` over `denominator`) lies within
    /// [`atLeast`, `atMost`], for each label of `by` if set.
    #[serde(rename_all = "camelCase")]
    Ratio {
        /// Summary column.
        metric: String,
        /// Runs averaged above the line.
        numerator: Filter,
        /// Runs averaged below the line.
        denominator: Filter,
        /// Compute one ratio per label of this axis.
        #[serde(default)]
        by: Option<String>,
        /// Lower bound, if any.
        #[serde(default)]
        at_least: Option<f64>,
        /// Upper bound, if any.
        #[serde(default)]
        at_most: Option<f64>,
    },
}

/// How a bound reduces the matching runs' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// The smallest value: "every run is at least" / "some run is at most".
    Min,
    /// The largest value: "every run is at most" / "some run is at least".
    Max,
    /// The mean.
    Mean,
}

impl Aggregate {
    fn reduce(self, values: &[f64]) -> f64 {
        match self {
            Self::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Self::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Self::Mean => values.iter().sum::<f64>() / values.len() as f64,
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Self::Min => "lowest",
            Self::Max => "highest",
            Self::Mean => "mean",
        }
    }
}

/// The outcome of one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The results satisfy the bound.
    Holds,
    /// They do not.
    Fails,
    /// No run matched, or the metric is missing (e.g. not measured by this backend).
    NoData,
}

impl Verdict {
    /// The report's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::Fails => "does not hold",
            Self::NoData => "no data",
        }
    }
}

/// A judged claim: our figure in words, and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// Our figure(s).
    pub ours: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl Claim {
    /// Checks that every axis the claim names exists in the grid.
    pub fn check_axes(&self, grid: &Mapping) -> Result<(), String> {
        let known = |axis: &str| grid.keys().any(|k| k.as_str() == Some(axis));
        let mut axes: Vec<&String> = Vec::new();
        match &self.check {
            Check::AtLeast { filter, .. } | Check::AtMost { filter, .. } => {
                axes.extend(filter.keys());
            }
            Check::Ratio {
                numerator,
                denominator,
                by,
                ..
            } => {
                axes.extend(numerator.keys());
                axes.extend(denominator.keys());
                axes.extend(by);
            }
        }
        match axes.into_iter().find(|axis| !known(axis)) {
            Some(axis) => Err(format!(
                "names axis `{axis}`, which the grid does not have: use one of the grid's axes"
            )),
            None => Ok(()),
        }
    }

    /// Judges the claim on a sweep's summary rows.
    pub fn judge(&self, rows: &[SummaryRow]) -> Judged {
        match &self.check {
            Check::AtLeast {
                metric,
                filter,
                value,
                aggregate,
            } => bound(
                rows,
                metric,
                filter,
                aggregate.unwrap_or(Aggregate::Min),
                |v| v >= *value,
            ),
            Check::AtMost {
                metric,
                filter,
                value,
                aggregate,
            } => bound(
                rows,
                metric,
                filter,
                aggregate.unwrap_or(Aggregate::Max),
                |v| v <= *value,
            ),
            Check::Ratio {
                metric,
                numerator,
                denominator,
                by,
                at_least,
                at_most,
            } => {
                let groups: Vec<Option<String>> = match by {
                    Some(axis) => {
                        let mut labels: Vec<String> = rows
                            .iter()
                            .filter_map(|r| r.labels.get(axis).cloned())
                            .collect();
                        labels.dedup();
                        labels.sort();
                        labels.dedup();
                        labels.into_iter().map(Some).collect()
                    }
                    None => vec![None],
                };
                let mut ours = String::new();
                let mut verdict = Verdict::Holds;
                for group in groups {
                    let with_group = |filter: &Filter| {
                        let mut filter = filter.clone();
                        if let (Some(axis), Some(label)) = (by, &group) {
                            filter.insert(axis.clone(), label.clone());
                        }
                        mean(rows, metric, &filter)
                    };
                    let prefix = group.as_ref().map(|g| format!("{g}: ")).unwrap_or_default();
                    if !ours.is_empty() {
                        ours.push_str("; ");
                    }
                    match (with_group(numerator), with_group(denominator)) {
                        (Some(top), Some(bottom)) if bottom != 0.0 => {
                            let ratio = top / bottom;
                            let _ = write!(ours, "{prefix}{ratio:.2}×");
                            let low = at_least.is_none_or(|l| ratio >= l);
                            let high = at_most.is_none_or(|h| ratio <= h);
                            if !(low && high) && verdict != Verdict::NoData {
                                verdict = Verdict::Fails;
                            }
                        }
                        _ => {
                            let _ = write!(ours, "{prefix}no data");
                            verdict = Verdict::NoData;
                        }
                    }
                }
                Judged { ours, verdict }
            }
        }
    }
}

fn matching<'a>(
    rows: &'a [SummaryRow],
    filter: &'a Filter,
) -> impl Iterator<Item = &'a SummaryRow> {
    rows.iter().filter(move |row| {
        filter
            .iter()
            .all(|(axis, label)| row.labels.get(axis) == Some(label))
    })
}

fn mean(rows: &[SummaryRow], metric: &str, filter: &Filter) -> Option<f64> {
    let values: Vec<f64> = matching(rows, filter)
        .filter_map(|row| row.metric(metric))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn bound(
    rows: &[SummaryRow],
    metric: &str,
    filter: &Filter,
    aggregate: Aggregate,
    holds: impl Fn(f64) -> bool,
) -> Judged {
    let matched: Vec<&SummaryRow> = matching(rows, filter).collect();
    let values: Vec<f64> = matched.iter().filter_map(|r| r.metric(metric)).collect();
    if values.is_empty() || values.len() < matched.len() {
        return Judged {
            ours: format!(
                "{metric} missing in {} of {} runs",
                matched.len() - values.len(),
                matched.len()
            ),
            verdict: Verdict::NoData,
        };
    }
    let reduced = aggregate.reduce(&values);
    Judged {
        ours: format!(
            "{} {metric} {reduced:.3} over {} run{}",
            aggregate.as_str(),
            values.len(),
            if values.len() == 1 { "" } else { "s" }
        ),
        verdict: if holds(reduced) {
            Verdict::Holds
        } else {
            Verdict::Fails
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, model: &str, accuracy: f64, speed: f64) -> SummaryRow {
        SummaryRow {
            run: format!("{system}-{model}"),
            labels: [("system", system), ("model", model)]
                .into_iter()
                .map(|(a, l)| (a.to_owned(), l.to_owned()))
                .collect(),
            metrics: [("final_accuracy", accuracy), ("steps_per_second", speed)]
                .into_iter()
                .map(|(m, v)| (m.to_owned(), v))
                .collect(),
        }
    }

    fn claim(check: &str) -> Claim {
        serde_yaml_ng::from_str(&format!("text: t\npaper: p\ncheck: {check}\n")).expect("claim")
    }

    #[test]
    fn bounds_take_the_worst_matching_run() {
        let rows = [
            row("byzsgd", "mlp", 0.85, 10.0),
            row("byzsgd", "cnn", 0.79, 5.0),
            row("vanilla", "mlp", 0.10, 40.0),
        ];
        let at_least =
            claim("{kind: atLeast, metric: final_accuracy, where: {system: byzsgd}, value: 0.8}");
        assert_eq!(at_least.judge(&rows).verdict, Verdict::Fails);
        let at_most =
            claim("{kind: atMost, metric: final_accuracy, where: {system: vanilla}, value: 0.5}");
        assert_eq!(at_most.judge(&rows).verdict, Verdict::Holds);
        let nothing =
            claim("{kind: atLeast, metric: final_accuracy, where: {system: other}, value: 0}");
        assert_eq!(nothing.judge(&rows).verdict, Verdict::NoData);
    }

    #[test]
    fn ratios_are_judged_per_group() {
        let rows = [
            row("byzsgd", "mlp", 0.85, 10.0),
            row("vanilla", "mlp", 0.9, 20.0),
            row("byzsgd", "cnn", 0.85, 2.0),
            row("vanilla", "cnn", 0.9, 20.0),
        ];
        let ratio = claim(
            "{kind: ratio, metric: steps_per_second, numerator: {system: vanilla}, \
             denominator: {system: byzsgd}, by: model, atMost: 3}",
        );
        let judged = ratio.judge(&rows);
        assert_eq!(judged.ours, "cnn: 10.00×; mlp: 2.00×");
        assert_eq!(judged.verdict, Verdict::Fails);
    }

    #[test]
    fn unknown_axes_are_refused() {
        let grid: Mapping = serde_yaml_ng::from_str("system: [a]\n").expect("grid");
        let bad = claim("{kind: atLeast, metric: m, where: {sytem: a}, value: 0}");
        assert!(bad.check_axes(&grid).expect_err("typo").contains("sytem"));
    }
}
