//! The `byzsgd-operator` command line: `crd` prints the CRD, `run` runs the controller. Every
//! flag is also an environment variable `BYZSGD_OPERATOR_…` (the Helm chart sets them).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use byzsgd_api::telemetry::{self, LogFormat};
use clap::{Parser, Subcommand};

use crate::{LeaseConfig, ReconcilerConfig, RunConfig};

/// The ByzSGDJob operator.
#[derive(Debug, Parser)]
#[command(name = "byzsgd-operator", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the ByzSGDJob and ByzantineChaos CRDs as one YAML stream
    /// (`byzsgd-operator crd | kubectl apply -f -`), or write one file per CRD.
    Crd(CrdArgs),
    /// Run the controller.
    Run(RunArgs),
}

/// Flags of `byzsgd-operator crd`.
#[derive(Debug, Clone, clap::Args)]
pub struct CrdArgs {
    /// Write one file per CRD into this directory (as `crds/` keeps them) instead of printing.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Flags of `byzsgd-operator run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "BYZSGD_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_listen: SocketAddr,
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long, env = "BYZSGD_OPERATOR_LEADER_ELECT", value_parser = clap::builder::FalseyValueParser::new())]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "BYZSGD_OPERATOR_LEASE_NAME",
        default_value = "byzsgd-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (defaults to the pod's namespace, `POD_NAMESPACE`).
    #[arg(long, env = "BYZSGD_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "BYZSGD_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// URL of a server's `/status`; placeholders `{podIP}`, `{pod}`, `{namespace}`, `{job}`,
    /// `{role}`, `{index}`.
    #[arg(
        long,
        env = "BYZSGD_OPERATOR_STATUS_URL_TEMPLATE",
        default_value = "http://{podIP}:9090/status"
    )]
    pub status_url_template: String,
    /// URL of a node's `/chaos` (where `ByzantineChaos` actions are sent); same placeholders as
    /// `--status-url-template`.
    #[arg(
        long,
        env = "BYZSGD_OPERATOR_CHAOS_URL_TEMPLATE",
        default_value = "http://{podIP}:9090/chaos"
    )]
    pub chaos_url_template: String,
    /// URL of a server's model snapshot at a step (what the operator compares to export
    /// `byzsgd_correct_servers_max_drift`); same placeholders plus `{step}`.
    #[arg(
        long,
        env = "BYZSGD_OPERATOR_MODEL_URL_TEMPLATE",
        default_value = "http://{podIP}:9090/model?step={step}"
    )]
    pub model_url_template: String,
    /// Seconds between two polls of a running job's servers. At most 14: a node serves its
    /// final status for 30 s after its last step, and two polls must fall in that time.
    #[arg(
        long,
        env = "BYZSGD_OPERATOR_STATUS_INTERVAL_SECONDS",
        default_value_t = 10.0
    )]
    pub status_interval_seconds: f64,
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, env = "BYZSGD_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

impl RunArgs {
    /// The [`RunConfig`] these flags describe.
    pub fn config(&self) -> anyhow::Result<RunConfig> {
        let leader_election = if self.leader_elect {
            let namespace = match &self.lease_namespace {
                Some(ns) => ns.clone(),
                None => std::env::var("POD_NAMESPACE").context(
                    "--leader-elect needs the Lease's namespace: pass --lease-namespace or set POD_NAMESPACE",
                )?,
            };
            // The pod name is unique among replicas; outside a pod, host and pid are.
            let holder = std::env::var("POD_NAME").unwrap_or_else(|_| {
                format!(
                    "{}-{}",
                    std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".to_owned()),
                    std::process::id()
                )
            });
            Some(LeaseConfig {
                name: self.lease_name.clone(),
                namespace,
                holder,
                duration: Duration::from_secs(15),
                renew_every: Duration::from_secs(5),
            })
        } else {
            None
        };
        let interval = Duration::try_from_secs_f64(self.status_interval_seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--status-interval-seconds must be a positive number of seconds")?;
        let linger = f64::from(crate::controller::build::pod::NODE_LINGER_SECONDS);
        anyhow::ensure!(
            2.0 * self.status_interval_seconds + 2.0 <= linger,
            "--status-interval-seconds {} is too long: nodes serve their final status for {linger} s \
             after their last step, and the operator must poll twice in that time (use at most {})",
            self.status_interval_seconds,
            (linger - 2.0) / 2.0
        );
        Ok(RunConfig {
            watch_namespace: self.watch_namespace.clone(),
            metrics_listen: Some(self.metrics_listen),
            leader_election,
            reconciler: ReconcilerConfig {
                status_url_template: self.status_url_template.clone(),
                chaos_url_template: self.chaos_url_template.clone(),
                model_url_template: self.model_url_template.clone(),
                poll_interval: interval,
                ..ReconcilerConfig::default()
            },
        })
    }
}

impl Cli {
    /// Runs the subcommand; errors are printed with their causes and give exit code 1.
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Crd(args) => crd(&args),
            Command::Run(args) => run(&args),
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

fn crd(args: &CrdArgs) -> anyhow::Result<()> {
    match &args.out_dir {
        None => {
            print!(
                "{}",
                byzsgd_api::crd::all_crds_yaml().context("cannot render the CRDs")?
            );
        }
        Some(dir) => {
            for (file, yaml) in byzsgd_api::crd::crd_files().context("cannot render the CRDs")? {
                let path = Path::new(dir).join(file);
                std::fs::write(&path, yaml).with_context(|| {
                    format!(
                        "cannot write {}: does the directory exist and is it writable?",
                        path.display()
                    )
                })?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
        crate::run(client, config, shutdown_signal()).await?;
        Ok(())
    })
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = interrupt.await;
        return;
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("signal received, shutting down");
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
