//! `byzsgd-node bench jobs [FILE…]`: runs whole jobs through the local runner, one after the
//! other on this machine, and prints one JSON line per job: steps per second, time to the
//! convergence target, final accuracy and drift. Defaults to the three examples the README
//! compares: vanilla SGD, ByzSGD asynchronous (the quickstart) and ByzSGD synchronous.
//! `--transport both` runs each job twice, with mutual TLS (what every deployment uses) and with
//! plaintext links, and adds what TLS costs in steps per second.

use std::path::PathBuf;

use crate::local::{self, LocalArgs};

/// Flags of `byzsgd-node bench jobs`.
#[derive(Debug, Clone, clap::Args)]
pub struct JobsArgs {
    /// Job manifests to run, in order.
    #[arg(
        value_name = "FILE",
        default_values = ["examples/vanilla.yaml", "examples/quickstart.yaml", "examples/synchronous.yaml"]
    )]
    pub files: Vec<PathBuf>,
    /// Where run directories are created.
    #[arg(
        long,
        env = "BYZSGD_BENCH_JOBS_RUNS_DIR",
        default_value = "runs",
        value_name = "DIR"
    )]
    pub runs_dir: PathBuf,
    /// The links to run each job with: `tls` (mutual TLS, the default everywhere), `insecure`
    /// (plaintext), or `both` (one run each, plus a line with the ratio).
    #[arg(long, value_enum, default_value_t = TransportChoice::Tls)]
    pub transport: TransportChoice,
}

/// Which links `bench jobs` runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// Mutual TLS.
    Tls,
    /// Plaintext.
    Insecure,
    /// One run with each.
    Both,
}

/// Runs the jobs and prints their figures.
pub fn run(args: &JobsArgs) -> anyhow::Result<()> {
    let transports: &[bool] = match args.transport {
        TransportChoice::Tls => &[false],
        TransportChoice::Insecure => &[true],
        TransportChoice::Both => &[false, true],
    };
    for file in &args.files {
        let mut steps_per_s = Vec::new();
        for &insecure in transports {
            let summary = local::run(&LocalArgs {
                insecure,
                ..LocalArgs::unattended(file.clone(), args.runs_dir.clone())
            })?;
            steps_per_s.push(summary.steps_per_second);
            let line = serde_json::json!({
                "bench": "jobs",
                "job": file.display().to_string(),
                "transport": if insecure { "insecure" } else { "mtls" },
                "steps": summary.steps,
                "steps_per_s": summary.steps_per_second,
                "wall_s": summary.wall_seconds,
                "startup_s": summary.startup_seconds,
                "target_accuracy": summary.target_accuracy,
                "time_to_target_s": summary.time_to_target_seconds,
                "final_accuracy": summary.final_accuracy,
                "max_drift": summary.max_drift,
                "run_dir": summary.run_dir,
            });
            println!("{line}");
        }
        if let [tls, plaintext] = steps_per_s[..] {
            let line = serde_json::json!({
                "bench": "jobs_tls_cost",
                "job": file.display().to_string(),
                "mtls_steps_per_s": tls,
                "insecure_steps_per_s": plaintext,
                "mtls_over_insecure": tls / plaintext,
            });
            println!("{line}");
        }
    }
    Ok(())
}
