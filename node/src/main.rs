//! `byzsgd-node`: one binary for every role; see `byzsgd-node --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    byzsgd_node::cli::Cli::parse().run()
}
