//! `byzsgd-exp`: chaos scenarios and sweeps (see the library's `//!` for the layout).

use clap::Parser;

fn main() -> std::process::ExitCode {
    match byzsgd_experiments::cli::main(byzsgd_experiments::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
