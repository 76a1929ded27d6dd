//! The command line of `byzsgd-exp`: `run`, `plot`, `report` and `list`, each a thin layer over
//! the library modules.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::{
    backend::kube::KubeOptions,
    plot, report,
    results::{self, SUMMARY_CSV},
    scenario::{self, BackendKind, Scenario},
    sweep,
};

/// Chaos scenarios and sweeps for ByzSGD: run a grid of jobs on a backend, plot, report.
///
/// A scenario is a directory with `scenario.yaml`: a base ByzSGDJob manifest, optional
/// ByzantineChaos files, a grid whose axes expand into runs, and the claims the report checks
/// (see experiments/README.md). Results are tidy CSV: `results.csv` (run, step, node, role,
/// metric, value) and `summary.csv` (one row per run).
#[derive(Debug, Parser)]
#[command(name = "byzsgd-exp", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every point of a scenario's grid and write results.csv, summary.csv and plots.
    Run(RunArgs),
    /// Draw the plots of a sweep (accuracy vs step and time, drift vs step, heatmaps).
    Plot(PlotArgs),
    /// Write a Markdown report of one or more swept scenarios: claims, verdicts, tables, plots.
    Report(ReportArgs),
    /// List the scenarios under a directory with their run counts.
    List(ListArgs),
}

/// Flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario directory (holding scenario.yaml) or file.
    #[arg(value_name = "SCENARIO")]
    pub scenario: PathBuf,
    /// Where runs execute: `sim` (in-process, virtual time), `local` (byzsgd-node processes on
    /// loopback) or `kube` (the current cluster, through the operator). Default: the
    /// scenario's `backend`, else `local`.
    #[arg(long, value_enum, env = "BYZSGD_EXP_BACKEND")]
    pub backend: Option<BackendKind>,
    /// Results directory (default: `results/` next to the scenario file).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The byzsgd-node executable for `--backend local` (default: next to byzsgd-exp, else on
    /// PATH).
    #[arg(long, env = "BYZSGD_NODE_BIN", value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Namespace for `--backend kube` (default: the kubeconfig's).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Longest wait for one job with `--backend kube`, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub timeout_seconds: u64,
    /// Keep jobs and chaos objects in the cluster after each run (`--backend kube`).
    #[arg(long)]
    pub keep: bool,
    /// Plain lines instead of a progress bar (e.g. in CI logs). The environment variable takes
    /// 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "BYZSGD_NO_PROGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_progress: bool,
    /// Only check the scenario and print its runs; run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Flags of `plot`.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// A scenario (its default results directory is plotted) or a results directory.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

const DEFAULT_TITLE: &str = "Results";

/// Flags of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Scenarios, or directories whose subdirectories are scenarios (e.g. experiments/paper).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// The Markdown file to write.
    #[arg(long, default_value = "REPORT.md", value_name = "FILE")]
    pub out: PathBuf,
    /// Report title.
    #[arg(long, default_value = DEFAULT_TITLE)]
    pub title: String,
}

/// Flags of `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Directory whose subdirectories are scenarios.
    #[arg(value_name = "DIR", default_value = "experiments/paper")]
    pub dir: PathBuf,
}

/// Runs the command line.
pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Plot(args) => plot_command(&args),
        Command::Report(args) => {
            let scenarios = scenarios_in(&args.paths)?;
            let mut words = vec!["byzsgd-exp report".to_owned()];
            words.extend(args.paths.iter().map(|p| p.display().to_string()));
            words.push(format!("--out {}", args.out.display()));
            if args.title != DEFAULT_TITLE {
                words.push(format!("--title '{}'", args.title));
            }
            let command = words.join(" ");
            report::write(&scenarios, &args.out, &args.title, &command)?;
            eprintln!("wrote {}", args.out.display());
            Ok(())
        }
        Command::List(args) => {
            for scenario in scenarios_in(&[args.dir])? {
                let runs = sweep::prepare_all(&scenario)?.len();
                println!(
                    "{:<28} {:>4} runs  {}",
                    scenario.dir().display().to_string(),
                    runs,
                    scenario.spec.title
                );
            }
            Ok(())
        }
    }
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario)?;
    let backend = args
        .backend
        .or(scenario.spec.backend)
        .unwrap_or(BackendKind::Local);
    if args.dry_run {
        for prepared in sweep::prepare_all(&scenario)? {
            println!(
                "{} {} {}",
                prepared.run.id,
                prepared.run.job_name,
                prepared.run.describe()
            );
        }
        return Ok(());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| scenario.default_results_dir());
    let options = sweep::SweepOptions {
        backend,
        out: out.clone(),
        node_bin: args.node_bin.clone(),
        kube: KubeOptions {
            namespace: args.namespace.clone(),
            timeout: Duration::from_secs(args.timeout_seconds),
            poll: Duration::from_secs(2),
            keep: args.keep,
        },
        no_progress: args.no_progress,
    };
    eprintln!(
        "{}: {} on the {} backend, results in {}",
        scenario.spec.name,
        scenario.spec.title,
        backend.as_str(),
        out.display()
    );
    let swept = sweep::run(&scenario, &options);
    // Plot whatever finished, even when some runs failed; the sweep's own error comes first.
    if out.join(SUMMARY_CSV).is_file() {
        match (plot_dir(&scenario, &out), &swept) {
            (Err(error), Ok(_)) => return Err(error),
            (Err(error), Err(_)) => eprintln!("warning: no plots: {error:#}"),
            (Ok(()), _) => {}
        }
    }
    let summaries = swept?;
    eprintln!(
        "{} runs done; {}",
        summaries.len(),
        out.join(SUMMARY_CSV).display()
    );
    Ok(())
}

fn plot_command(args: &PlotArgs) -> anyhow::Result<()> {
    if args.path.join(SUMMARY_CSV).is_file() {
        let scenario_file = args
            .path
            .parent()
            .map(|p| p.join(scenario::FILE_NAME))
            .filter(|p| p.is_file())
            .context(
                "a results directory is plotted with its scenario: expected scenario.yaml in \
                 the parent directory; or pass the scenario itself",
            )?;
        let scenario = Scenario::load(&scenario_file)?;
        return plot_dir(&scenario, &args.path);
    }
    let scenario = Scenario::load(&args.path)?;
    plot_dir(&scenario, &scenario.default_results_dir())
}

/// Draws a sweep's plots into its results directory and names them.
pub fn plot_dir(scenario: &Scenario, dir: &Path) -> anyhow::Result<()> {
    let summary_path = dir.join(SUMMARY_CSV);
    if !summary_path.is_file() {
        bail!(
            "{} does not exist: run the scenario first (`byzsgd-exp run {}`)",
            summary_path.display(),
            scenario.dir().display()
        );
    }
    let summary = results::read_summary(&summary_path)?;
    for path in plot::plot_scenario(scenario, dir, &summary)? {
        eprintln!("plot {}", path.display());
    }
    Ok(())
}

/// The scenarios named by `paths`: each a scenario, or a directory of scenario directories
/// (sorted by name).
pub fn scenarios_in(paths: &[PathBuf]) -> anyhow::Result<Vec<Scenario>> {
    let mut scenarios = Vec::new();
    for path in paths {
        if path.is_file() || path.join(scenario::FILE_NAME).is_file() {
            scenarios.push(Scenario::load(path)?);
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|dir| dir.join(scenario::FILE_NAME).is_file())
            .collect();
        found.sort();
        if found.is_empty() {
            bail!(
                "{} is neither a scenario nor a directory of scenarios (no scenario.yaml)",
                path.display()
            );
        }
        for dir in found {
            scenarios.push(Scenario::load(&dir)?);
        }
    }
    Ok(scenarios)
}
