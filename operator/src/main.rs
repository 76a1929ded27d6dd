//! `byzsgd-operator`: the ByzSGDJob controller (`run`) and its CRD (`crd`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    byzsgd_operator::cli::Cli::parse().run()
}
