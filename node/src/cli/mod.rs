//! The `byzsgd-node` command line: one binary, one subcommand per way of running.
//!
//! Every flag is also an environment variable `BYZSGD_…` (clap `env`), so pods can be
//! configured either way. Each subcommand's flags and implementation live next to what it
//! drives; this module only dispatches and turns errors into exit codes.

pub mod aggregate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bench;

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
}

impl Cli {
    /// Runs the chosen subcommand; errors are printed with their causes and give exit code 1.
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Aggregate(args) => aggregate::run(&args),
            Command::Bench(BenchCommand::Gars(args)) => bench::gars::run(&args),
            Command::Bench(BenchCommand::Model(args)) => bench::model::run(&args),
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
