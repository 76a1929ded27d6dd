//! A scenario: one base `ByzSGDJob` manifest, optional `ByzantineChaos` files applied to every
//! run, a grid whose axes expand into runs, and the claims the report checks. Read from
//! `scenario.yaml` (or any YAML file) with unknown fields refused by path, in the manner of
//! raft-rs's `Config::validate`: everything is checked before the first run starts.
//!
//! DESIGN.md sketched TOML scenarios; they are YAML here because a scenario embeds manifest
//! fragments (grid overrides) and chaos files, which users already write in YAML.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

/// File name looked up when a scenario is given as a directory.
pub const FILE_NAME: &str = "scenario.yaml";

/// Where a scenario comes from and what it says.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario file.
    pub path: PathBuf,
    /// The parsed file.
    pub spec: ScenarioSpec,
}

/// The contents of a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioSpec {
    /// Short name (DNS label: lower case, digits, `-`), used in job names and file names.
    pub name: String,
    /// One-line title for the report.
    pub title: String,
    /// What the scenario shows, for the report (Markdown).
    #[serde(default)]
    pub description: String,
    /// The base manifest, relative to the scenario file.
    pub job: PathBuf,
    /// Chaos files applied to every run, relative to the scenario file. Their `spec.job` is
    /// rewritten to each run's job name.
    #[serde(default)]
    pub chaos: Vec<PathBuf>,
    /// Backend used when the command line does not name one.
    #[serde(default)]
    pub backend: Option<BackendKind>,
    /// The grid: each axis is a list of values or a map of labelled override sets; runs are
    /// the cartesian product, in file order (see [`crate::grid`]).
    #[serde(default)]
    pub grid: serde_yaml_ng::Mapping,
    /// Claims the report checks against the results.
    #[serde(default)]
    pub claims: Vec<crate::claims::Claim>,
    /// Plots drawn by `plot` and `report` besides the default ones.
    #[serde(default)]
    pub plots: Vec<PlotSpec>,
    /// Where and why our setting differs from the paper's, for the report (Markdown).
    #[serde(default)]
    pub differences: String,
}

/// Where runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In-process deterministic simulation (`byzsgd_core::sim`), virtual time.
    Sim,
    /// Separate `byzsgd-node` processes on loopback (`byzsgd-node local`).
    Local,
    /// The current Kubernetes cluster, through the operator.
    Kube,
}

impl BackendKind {
    /// The name used on the command line and in `summary.csv`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Local => "local",
            Self::Kube => "kube",
        }
    }
}

/// An extra plot.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlotSpec {
    /// A heatmap of a summary column over two axes (e.g. final accuracy over attack × f).
    pub heatmap: HeatmapSpec,
}

/// A heatmap of `metric` with `x` and `y` axes of the grid; other axes are averaged.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeatmapSpec {
    /// Grid axis along x.
    pub x: String,
    /// Grid axis along y.
    pub y: String,
    /// Summary column (default `final_accuracy`).
    #[serde(default = "default_heatmap_metric")]
    pub metric: String,
    /// Only runs whose labels match (axis → label).
    #[serde(default, rename = "where")]
    pub filter: std::collections::BTreeMap<String, String>,
}

fn default_heatmap_metric() -> String {
    "final_accuracy".to_owned()
}

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A field is missing, unknown or of the wrong type.
    #[error("{path}: field `{field}`: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// Path of the field, e.g. `grid.seed`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl Scenario {
    /// Reads a scenario from a file or from a directory holding `scenario.yaml`.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let path = if path.is_dir() {
            path.join(FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses scenario text read from `path` (used to name errors and resolve files).
    pub fn parse(text: &str, path: PathBuf) -> Result<Self, ScenarioError> {
        let field = |field: String, message: String| ScenarioError::Field {
            path: path.clone(),
            field,
            message,
        };
        let value: Value = serde_yaml_ng::from_str(text)
            .map_err(|error| field("(document)".to_owned(), error.to_string()))?;
        let spec: ScenarioSpec = serde_path_to_error::deserialize(value).map_err(|error| {
            let at = error.path().to_string();
            field(at, error.into_inner().to_string())
        })?;
        if !is_dns_label(&spec.name) || spec.name.len() > 40 {
            return Err(field(
                "name".to_owned(),
                format!(
                    "`{}` is not a short DNS label: use at most 40 lower-case letters, digits \
                     and `-`, starting with a letter",
                    spec.name
                ),
            ));
        }
        crate::grid::check_axes(&spec.grid).map_err(|(axis, message)| field(axis, message))?;
        for (index, claim) in spec.claims.iter().enumerate() {
            claim
                .check_axes(&spec.grid)
                .map_err(|message| field(format!("claims[{index}]"), message))?;
        }
        Ok(Self { path, spec })
    }

    /// The directory the scenario's relative paths start from.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// The base manifest's path.
    pub fn job_path(&self) -> PathBuf {
        self.dir().join(&self.spec.job)
    }

    /// The chaos files' paths.
    pub fn chaos_paths(&self) -> Vec<PathBuf> {
        self.spec.chaos.iter().map(|p| self.dir().join(p)).collect()
    }

    /// The grid's axes, in file order.
    pub fn axes(&self) -> Vec<String> {
        self.spec
            .grid
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    }

    /// Default results directory: `results/` next to the scenario file.
    pub fn default_results_dir(&self) -> PathBuf {
        self.dir().join("results")
    }
}

/// Whether `name` is a DNS-1123 label that starts with a letter.
pub fn is_dns_label(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, PathBuf::from("s/scenario.yaml"))
    }

    #[test]
    fn a_minimal_scenario_parses_and_resolves_paths_next_to_it() {
        let scenario =
            parse("name: tiny\ntitle: Tiny\njob: job.yaml\nchaos: [c.yaml]\n").expect("parses");
        assert_eq!(scenario.job_path(), PathBuf::from("s/job.yaml"));
        assert_eq!(scenario.chaos_paths(), vec![PathBuf::from("s/c.yaml")]);
        assert_eq!(scenario.default_results_dir(), PathBuf::from("s/results"));
    }

    #[test]
    fn unknown_and_bad_fields_are_named() {
        let error = parse("name: tiny\ntitle: T\njob: j.yaml\ngird: {}\n").expect_err("typo");
        assert!(error.to_string().contains("gird"), "{error}");
        let error = parse("name: Tiny_1\ntitle: T\njob: j.yaml\n").expect_err("bad name");
        assert!(error.to_string().contains("field `name`"), "{error}");
        let error =
            parse("name: t\ntitle: T\njob: j.yaml\nbackend: docker\n").expect_err("backend");
        assert!(error.to_string().contains("field `backend`"), "{error}");
        let error =
            parse("name: t\ntitle: T\njob: j.yaml\ngrid: {seed: 3}\n").expect_err("scalar axis");
        assert!(error.to_string().contains("field `grid.seed`"), "{error}");
    }
}
