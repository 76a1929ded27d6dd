//! The `byzsgd-node` command line: one binary, one subcommand per way of running.
//!
//! Every flag is also an environment variable `BYZSGD_…` (clap `env`), so pods can be
//! configured either way. Each subcommand's flags and implementation live next to what it
//! drives; this module only dispatches and turns errors into exit codes.

pub mod aggregate;
pub mod serve;

use std::process::ExitCode;

use byzsgd_core::job::Role;
use clap::{Parser, Subcommand};

use crate::{bench, local};

/// ByzSGD node: parameter server, worker, local runner and tools.
///
/// ByzSGD (PODC 2020) trains a model with several parameter servers and several workers where
/// up to a third of each may be Byzantine.
#[derive(Debug, Parser)]
#[command(name = "byzsgd-node", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `byzsgd-node`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a parameter server (what server pods run).
    Server(serve::NodeArgs),
    /// Run a worker (what worker pods run).
    Worker(serve::NodeArgs),
    /// Run a whole job on this machine: every server and worker as a separate process on
    /// loopback, with a progress bar; results go to `runs/NAME-TIMESTAMP/`.
    ///
    /// FILE is the same ByzSGDJob manifest `kubectl apply` takes (pod-level fields are
    /// ignored). Try: byzsgd-node local examples/quickstart.yaml
    ///
    /// With --chaos CHAOS_FILE (repeatable), ByzantineChaos configs are applied to the run:
    /// e.g. byzsgd-node local job.yaml --chaos examples/chaos/alie-workers.yaml
    Local(local::LocalCommand),
    /// Aggregate n vectors with a rule (GAR) and print the result as JSON.
    ///
    /// Input: a `.npy` file holding a 2-D float32/float64 array (one vector per row) or a JSON
    /// array of arrays. Useful to cross-check rules against other libraries.
    Aggregate(aggregate::AggregateArgs),
    /// Print performance figures as JSON lines (one line per case).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// The benchmarks of `byzsgd-node bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time every aggregation rule on random inputs, against the floor of summing them once.
    Gars(bench::gars::GarsArgs),
    /// Training throughput (samples/s, one thread) per model and batch size.
    Model(bench::model::ModelArgs),
    /// Whole jobs through the local runner: steps/s and time to the accuracy target.
    Jobs(bench::jobs::JobsArgs),
    /// A Byzantine worker floods server-0: correct nodes' peak memory and steps/s, against an
    /// undisturbed run of the same job.
    Flood(bench::flood::FloodArgs),
}

impl Cli {
    /// Runs the chosen subcommand; errors are printed with their causes and give exit code 1
    /// (a server or worker that cannot read its data set: 78, see [`serve::main`]).
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Server(args) => return serve::main(Role::Server, &args),
            Command::Worker(args) => return serve::main(Role::Worker, &args),
            Command::Local(command) => local::run_with_chaos(&command.args, &command.chaos)
                .map(|summary| print_summary(&summary)),
            Command::Aggregate(args) => aggregate::run(&args),
            Command::Bench(BenchCommand::Gars(args)) => bench::gars::run(&args),
            Command::Bench(BenchCommand::Model(args)) => bench::model::run(&args),
            Command::Bench(BenchCommand::Jobs(args)) => bench::jobs::run(&args),
            Command::Bench(BenchCommand::Flood(args)) => bench::flood::run(&args),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The last lines of `byzsgd-node local`.
fn print_summary(summary: &local::record::Summary) {
    let percent = |value: Option<f32>| {
        value.map_or_else(
            || "n/a".to_owned(),
            |value| format!("{:.1} %", value * 100.0),
        )
    };
    println!("final accuracy   {}", percent(summary.final_accuracy));
    println!(
        "max drift        {:.3e}  (largest distance between correct servers' models)",
        summary.max_drift
    );
    println!(
        "wall time        {:.1} s  ({:.1} steps/s; plus {:.1} s start-up)",
        summary.wall_seconds, summary.steps_per_second, summary.startup_seconds
    );
    if let Some(target) = summary.target_accuracy {
        match summary.time_to_target_seconds {
            Some(seconds) => println!("time to {}    {seconds:.1} s", percent(Some(target))),
            None => println!("time to {}    not reached", percent(Some(target))),
        }
    }
    println!("results          {}", summary.run_dir.display());
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// clap checks the whole command tree (duplicate flags, bad defaults) only when asked.
    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
