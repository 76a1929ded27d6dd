//! `byzsgd-node server` and `byzsgd-node worker`: one node of a job, as pods run it (the
//! operator renders these flags) and as the local runner starts it.

use std::{
    collections::BTreeMap, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration,
};

use anyhow::{Context, bail};
use byzsgd_api::{
    Manifest,
    admin::{CheckpointStatus, EXIT_DATA_UNAVAILABLE},
    identity::{TLS_DIR, node_name},
    pki::NodeCredentials,
    telemetry::{self, LogFormat},
    validate,
};
use byzsgd_core::{
    assemble::{AssembleError, Assembly, DataNeeds, JobData},
    job::{Behaviour, Role},
    protocol::{NodeId, chaos::ChaosHandle, checkpoint::Checkpoint},
};
use serde::Deserialize;
use tokio::{io::AsyncBufReadExt, net::TcpListener, sync::oneshot};

use crate::{
    checkpoint::CheckpointStore,
    rpc::{Transport, tls::Tls},
    runtime,
    state::{ChaosControl, Checkpointing, RuntimeOptions},
};

/// Flags shared by `server` and `worker`. Every flag is also a `BYZSGD_…` environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The `ByzSGDJob` manifest: the same file `kubectl apply` takes (pod-level fields are ignored).
    #[arg(long, env = "BYZSGD_JOB_FILE", value_name = "FILE")]
    pub job_file: PathBuf,
    /// This node's index within its role, from 0.
    #[arg(long, env = "BYZSGD_INDEX")]
    pub index: usize,
    /// Address the gRPC server binds (port 0 picks a free one).
    #[arg(long, env = "BYZSGD_LISTEN", default_value = "0.0.0.0:7070")]
    pub listen: SocketAddr,
    /// Address the admin HTTP server (/metrics, /healthz, /readyz, /status) binds.
    #[arg(long, env = "BYZSGD_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Peer addresses as `server-0=host:port,worker-3=host:port,…` (every node of the job).
    #[arg(
        long,
        env = "BYZSGD_PEERS",
        value_delimiter = ',',
        value_name = "NAME=HOST:PORT"
    )]
    pub peers: Vec<String>,
    /// Peer address template, e.g. `{job}-{role}-{index}.{job}:7070` (the operator's headless
    /// Service names); `{job}`, `{role}` and `{index}` are substituted for every node.
    #[arg(
        long,
        env = "BYZSGD_PEER_TEMPLATE",
        value_name = "TEMPLATE",
        conflicts_with = "peers"
    )]
    pub peer_template: Option<String>,
    /// Print the bound addresses as a JSON line on stdout, then read the peer table (a JSON
    /// object `{"server-0": "host:port", …}`) from stdin, serve, and take the first step only
    /// after one more line (the go); exit when stdin closes. Used by `byzsgd-node local`, which
    /// arms chaos between the two lines, so no node outlives its runner.
    #[arg(long, env = "BYZSGD_PEERS_FROM_STDIN", value_parser = clap::builder::FalseyValueParser::new(), conflicts_with_all = ["peers", "peer_template"])]
    pub peers_from_stdin: bool,
    /// Print progress events as JSON lines on stdout.
    #[arg(long, env = "BYZSGD_PROGRESS_LINES", value_parser = clap::builder::FalseyValueParser::new())]
    pub progress_lines: bool,
    /// Seconds to keep serving after the node ran all its steps, so slower peers can finish.
    #[arg(long, env = "BYZSGD_LINGER_SECONDS", default_value_t = 5.0)]
    pub linger_seconds: f64,
    /// Override the data set directory of the manifest.
    #[arg(long, env = "BYZSGD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Threads of the async runtime that carries gRPC, admin and the protocol (the protocol
    /// itself runs on one thread). Raise it for nodes with many peers and spare cores.
    #[arg(long, env = "BYZSGD_WORKER_THREADS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,
    /// File holding the bearer token that `POST /chaos` on the admin port requires (trailing
    /// whitespace ignored). Without a token the node refuses every chaos call; with one it
    /// still refuses unless the job sets `spec.chaos.allowed: true`.
    #[arg(long, env = "BYZSGD_CHAOS_TOKEN_FILE", value_name = "FILE")]
    pub chaos_token_file: Option<PathBuf>,
    /// The chaos bearer token itself, from the environment only (a flag would show it in `ps`).
    #[arg(
        long,
        env = "BYZSGD_CHAOS_TOKEN",
        hide = true,
        hide_env_values = true,
        conflicts_with = "chaos_token_file"
    )]
    pub chaos_token: Option<String>,
    /// Directory with this node's credentials: `ca.crt` (the job's CA), `tls.crt` and `tls.key`
    /// (its certificate, whose DNS name is `<job>-<role>-<index>`, and key). Every peer link is
    /// mutual TLS with them. The operator mounts the node's Secret at /etc/byzsgd-tls.
    #[arg(
        long,
        env = "BYZSGD_TLS_DIR",
        value_name = "DIR",
        conflicts_with = "insecure"
    )]
    pub tls_dir: Option<PathBuf>,
    /// Plaintext peer links where a peer is whoever it claims to be. For trusted networks and
    /// debugging only: ByzSGD's resilience assumes a Byzantine node cannot take another's
    /// identity, which only --tls-dir (or the local runner's credentials) guarantees.
    #[arg(long, env = "BYZSGD_INSECURE", value_parser = clap::builder::FalseyValueParser::new())]
    pub insecure: bool,
    /// Servers: the directory for checkpoints (every `spec.training.checkpointEvery` steps) and
    /// the final model, in a folder of their own (`<job>-server-<i>/`). A server that finds a
    /// checkpoint of its own there resumes from the newest instead of step 0. The operator
    /// mounts the job's checkpoint volume here; workers ignore it.
    #[arg(long, env = "BYZSGD_CHECKPOINT_DIR", value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, env = "BYZSGD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// File to write the fatal error to before exiting, e.g. `/dev/termination-log`: Kubernetes
    /// shows it as the container's termination message, where the operator reads why a node
    /// stopped (a data set it cannot read exits with code 78 and is not restarted).
    #[arg(long, env = "BYZSGD_TERMINATION_LOG", value_name = "FILE")]
    pub termination_log: Option<PathBuf>,
}

/// A node that cannot read its data set: no restart will fix it, so it exits with
/// [`EXIT_DATA_UNAVAILABLE`] instead of the generic failure code.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DataUnavailable(AssembleError);

/// Runs one node of `role` and turns its outcome into the process's exit code, writing a fatal
/// error to `--termination-log` as well as to stderr.
pub fn main(role: Role, args: &NodeArgs) -> ExitCode {
    let Err(error) = run(role, args) else {
        return ExitCode::SUCCESS;
    };
    let message = format!("error: {error:#}");
    eprintln!("{message}");
    if let Some(path) = &args.termination_log
        && let Err(write_error) = std::fs::write(path, format!("{message}\n"))
    {
        eprintln!(
            "cannot write --termination-log {}: {write_error}",
            path.display()
        );
    }
    if error.downcast_ref::<DataUnavailable>().is_some() {
        ExitCode::from(EXIT_DATA_UNAVAILABLE)
    } else {
        ExitCode::FAILURE
    }
}

/// A server's checkpoint folder under `--checkpoint-dir` and the newest checkpoint of its own
/// found there, to resume from; nothing for a worker or without the flag.
fn checkpoints(
    args: &NodeArgs,
    me: NodeId,
    job: &str,
    assembly: &Assembly,
) -> anyhow::Result<(Option<Checkpointing>, Option<Checkpoint>)> {
    let (Some(root), Role::Server) = (&args.checkpoint_dir, me.role) else {
        return Ok((None, None));
    };
    let spec = &assembly.plan().spec;
    let store = CheckpointStore::open(root, job, me, spec.model.clone())?;
    let resume = store.latest(assembly.config().dimension, spec.training.steps);
    let resumed = resume.as_ref().map(|(checkpoint, folder)| {
        tracing::info!(step = checkpoint.step, checkpoint = %folder.display(), "resuming from a checkpoint");
        CheckpointStatus {
            step: checkpoint.step,
            path: folder.display().to_string(),
        }
    });
    let checkpointing = Checkpointing {
        store,
        every: spec.training.checkpoint_every,
        resumed,
    };
    Ok((
        Some(checkpointing),
        resume.map(|(checkpoint, _)| checkpoint),
    ))
}

/// What `--peers-from-stdin` reads.
#[derive(Debug, Deserialize)]
struct PeerTable {
    peers: BTreeMap<String, String>,
    /// This node's credentials (the local runner's in-memory CA); absent with `--insecure`.
    #[serde(default)]
    credentials: Option<NodeCredentials>,
}

/// Runs one node of `role` until it finished or the process is told to stop.
pub fn run(role: Role, args: &NodeArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let manifest = Manifest::from_file(&args.job_file)?;
    let mut spec = manifest.spec.clone();
    if let Some(dir) = &args.data_dir {
        spec.dataset.path = Some(dir.clone());
    }
    let plan = validate(&spec)?;
    let replicas = match role {
        Role::Server => plan.servers,
        Role::Worker => plan.workers,
    };
    if args.index >= replicas {
        bail!(
            "--index {} is out of range: the job has {replicas} {role}s (indices 0..{replicas})",
            args.index
        );
    }
    // Credentials are checked before the data set loads (seconds) or anything binds; with
    // --peers-from-stdin they arrive with the peer table.
    let transport = transport_from_flags(args)?;
    let me = NodeId {
        role,
        index: args.index,
    };
    let attack = attack_name(plan.behaviour(role, args.index));
    let snapshot_every = plan.spec.training.evaluate_every;
    let needs = match role {
        Role::Server => DataNeeds::Server,
        Role::Worker => DataNeeds::Worker(args.index),
    };
    let data = JobData::load_for(&plan, needs).map_err(|error| match error {
        AssembleError::Data { .. } => anyhow::Error::new(DataUnavailable(error)),
        other => anyhow::Error::new(other),
    })?;
    let assembly = Assembly::new(plan, data)?;
    let dimension = assembly.config().dimension;
    let (checkpoints, resume) = checkpoints(args, me, &manifest.name, &assembly)?;
    let (node, chaos_handle) = assembly.node_resuming(role, args.index, resume.as_ref())?;
    let chaos = chaos_handle.map(|handle| chaos_control(&assembly, role, args.index, handle));
    let chaos_token = chaos_token(args)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.worker_threads))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let grpc = TcpListener::bind(args.listen).await.with_context(|| format!("cannot bind --listen {}", args.listen))?;
        let admin = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("cannot bind --admin-listen {}", args.admin_listen))?;
        let Wiring { peers, start, stdin_closed, credentials } = wire(args, me, &grpc, &admin, &manifest.name, assembly.plan()).await?;
        check_peers(&peers, assembly.plan().servers, assembly.plan().workers)?;
        let transport = match (transport, credentials) {
            (Some(transport), _) => transport,
            (None, Some(credentials)) => Transport::MutualTls(Tls::new(credentials).context("the credentials on stdin")?),
            (None, None) => bail!("the peer table on stdin carries no credentials: the runner must send them, or start the node with --insecure"),
        };
        if let Transport::MutualTls(tls) = &transport {
            tls.ensure_names(&node_name(&manifest.name, me))?;
        }
        let options = RuntimeOptions {
            job: manifest.name.clone(),
            me,
            dimension,
            peers,
            transport,
            attack,
            snapshot_every,
            linger: Duration::from_secs_f64(args.linger_seconds.max(0.0)),
            progress_lines: args.progress_lines,
            quorums: (assembly.plan().server_quorum, assembly.plan().worker_quorum),
            chaos,
            chaos_token,
            checkpoints,
        };
        let shutdown = async move {
            let stdin_gone = async {
                match stdin_closed {
                    Some(closed) => {
                        let _ = closed.await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = shutdown_signal() => tracing::info!("signal received, shutting down"),
                () = stdin_gone => tracing::warn!("the runner went away (stdin closed), shutting down"),
            }
        };
        tracing::info!(node = %me, job = %options.job, "starting");
        // Without the go line (stdin closed first) the node never starts; shutdown follows.
        let start = async move {
            if start.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let status = runtime::run_gated(node, options, grpc, admin, start, shutdown).await?;
        tracing::info!(node = %me, step = status.step, accuracy = status.accuracy, "stopped");
        Ok(())
    })
}

/// The transport the flags choose: `--insecure`, or mutual TLS with `--tls-dir`; None when
/// the credentials come on stdin (`--peers-from-stdin`).
fn transport_from_flags(args: &NodeArgs) -> anyhow::Result<Option<Transport>> {
    Ok(match (&args.tls_dir, args.insecure) {
        (_, true) => {
            tracing::warn!(
                "--insecure: peer links are plaintext and a peer is whoever it claims to be"
            );
            Some(Transport::Insecure)
        }
        (Some(dir), false) => Some(Transport::MutualTls(Tls::from_dir(dir)?)),
        (None, false) if args.peers_from_stdin => None,
        (None, false) => bail!(
            "a node needs its identity: --tls-dir DIR with ca.crt, tls.crt and tls.key (the \
             operator mounts them at {TLS_DIR}), or --insecure for plaintext links on a trusted \
             network"
        ),
    })
}

/// Where a node's peers are, when it may start, and (`--peers-from-stdin`) its credentials.
struct Wiring {
    /// The credentials the runner sent with the peer table.
    credentials: Option<NodeCredentials>,
    /// Every node's gRPC address.
    peers: BTreeMap<NodeId, String>,
    /// Fires when the node may take its first step.
    start: oneshot::Receiver<()>,
    /// Fires when the runner closed stdin (`--peers-from-stdin` only).
    stdin_closed: Option<oneshot::Receiver<()>>,
}

/// Reads the peers from the flags, or announces the ports and reads the peer table and the go
/// line from stdin (`--peers-from-stdin`).
async fn wire(
    args: &NodeArgs,
    me: NodeId,
    grpc: &TcpListener,
    admin: &TcpListener,
    job: &str,
    plan: &byzsgd_core::job::Plan,
) -> anyhow::Result<Wiring> {
    let (start_tx, start) = oneshot::channel::<()>();
    if !args.peers_from_stdin {
        let _ = start_tx.send(());
        let peers = match &args.peer_template {
            Some(template) => template_peers(template, job, plan.servers, plan.workers),
            None => parse_peer_list(&args.peers)?,
        };
        return Ok(Wiring {
            peers,
            start,
            stdin_closed: None,
            credentials: None,
        });
    }
    let announce = serde_json::json!({
        "event": "listening",
        "node": me.to_string(),
        "grpc": grpc.local_addr()?.to_string(),
        "admin": admin.local_addr()?.to_string(),
    });
    println!("{announce}");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let line = lines
        .next_line()
        .await?
        .context("stdin closed before the peer table arrived")?;
    let table: PeerTable =
        serde_json::from_str(&line).context("the peer table on stdin is not valid JSON")?;
    let (closed_tx, closed) = oneshot::channel::<()>();
    // The next line is the runner's go (it arms chaos first); after that the runner keeps
    // stdin open for our whole life: EOF means it is gone.
    tokio::spawn(async move {
        if let Ok(Some(_)) = lines.next_line().await {
            let _ = start_tx.send(());
            while let Ok(Some(_)) = lines.next_line().await {}
        }
        let _ = closed_tx.send(());
    });
    Ok(Wiring {
        peers: parse_peer_map(&table.peers)?,
        start,
        stdin_closed: Some(closed),
        credentials: table.credentials,
    })
}

/// The manifest attack's name, for the `byzsgd_byzantine_active` metric.
fn attack_name(behaviour: &Behaviour) -> Option<String> {
    match behaviour {
        Behaviour::Honest => None,
        Behaviour::Server(attack) => Some(attack.kind.to_string()),
        Behaviour::Worker(attack) => Some(attack.kind.to_string()),
    }
}

/// What the admin server needs to arm this node: the handle and the size of its role.
fn chaos_control(
    assembly: &Assembly,
    role: Role,
    index: usize,
    handle: ChaosHandle,
) -> ChaosControl {
    let plan = assembly.plan();
    let (replicas, byzantine) = match role {
        Role::Server => (plan.servers, plan.byzantine_servers),
        Role::Worker => (plan.workers, plan.byzantine_workers),
    };
    ChaosControl {
        handle,
        replicas,
        byzantine,
        servers: plan.servers,
        workers: plan.workers,
        // Each node draws its own delays, reproducibly.
        seed: plan.spec.training.seed
            ^ (u64::from(role == Role::Worker) << 32 | index as u64).wrapping_mul(0x9E37_79B9),
    }
}

/// The chaos token from `--chaos-token-file` or `BYZSGD_CHAOS_TOKEN`, if either is set.
fn chaos_token(args: &NodeArgs) -> anyhow::Result<Option<String>> {
    let token = match (&args.chaos_token_file, &args.chaos_token) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --chaos-token-file {}", path.display()))?,
        (None, Some(token)) => token.clone(),
        (None, None) => return Ok(None),
    };
    let token = token.trim_end().to_owned();
    if token.is_empty() {
        bail!(
            "the chaos token is empty: put a secret in --chaos-token-file / BYZSGD_CHAOS_TOKEN, \
             or set neither to refuse chaos"
        );
    }
    Ok(Some(token))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn parse_peer_map(map: &BTreeMap<String, String>) -> anyhow::Result<BTreeMap<NodeId, String>> {
    map.iter()
        .map(|(name, address)| {
            let id = NodeId::parse(name).with_context(|| {
                format!("peer name `{name}` is not like `server-0` or `worker-3`")
            })?;
            Ok((id, address.clone()))
        })
        .collect()
}

/// Parses `--peers server-0=host:port,…`.
pub fn parse_peer_list(entries: &[String]) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut map = BTreeMap::new();
    for entry in entries {
        let (name, address) = entry
            .split_once('=')
            .with_context(|| format!("--peers entry `{entry}` is not NAME=HOST:PORT"))?;
        map.insert(name.to_owned(), address.to_owned());
    }
    parse_peer_map(&map)
}

/// Expands a `{job}-{role}-{index}` template for every node of the job.
pub fn template_peers(
    template: &str,
    job: &str,
    servers: usize,
    workers: usize,
) -> BTreeMap<NodeId, String> {
    let nodes = (0..servers)
        .map(NodeId::server)
        .chain((0..workers).map(NodeId::worker));
    nodes
        .map(|id| {
            let address = template
                .replace("{job}", job)
                .replace("{role}", id.role.as_str())
                .replace("{index}", &id.index.to_string());
            (id, address)
        })
        .collect()
}

fn check_peers(
    peers: &BTreeMap<NodeId, String>,
    servers: usize,
    workers: usize,
) -> anyhow::Result<()> {
    let missing: Vec<String> = (0..servers)
        .map(NodeId::server)
        .chain((0..workers).map(NodeId::worker))
        .filter(|id| !peers.contains_key(id))
        .map(|id| id.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "no address for {} (give every node with --peers, --peer-template or --peers-from-stdin)",
            missing.join(", ")
        );
    }
    Ok(())
}
