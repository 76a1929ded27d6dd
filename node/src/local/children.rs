//! The local runner's child processes: one `byzsgd-node server|worker` per node on loopback
//! ports it picks itself, wired with the stdin handshake (the child announces its ports, the
//! runner answers with everyone's and the child's credentials from the runner's in-memory job
//! CA, and later with a go line once chaos is armed). Keys never touch the disk. Each
//! child's stdin stays open for its whole life: when the runner dies, even by SIGKILL, every
//! child reads EOF and exits, so no child outlives its runner. A crashed child can be started
//! again on the same ports ([`Launcher::respawn`]), so its peers find it where it was.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use std::sync::Arc;

use anyhow::{Context, bail};
use byzsgd_api::{admin::Status, pki::JobCa};
use byzsgd_core::{job::Role, protocol::NodeId};
use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::{mpsc, oneshot},
};

/// A line a child printed, or its exit.
#[derive(Debug)]
pub enum ChildOutput {
    /// A JSON progress line on stdout.
    Progress(NodeId, String),
    /// A log line on stderr.
    Log(NodeId, String),
    /// Stdout closed (the child is exiting).
    Closed(NodeId),
}

/// A running node process.
#[derive(Debug)]
pub struct ChildNode {
    /// Which node.
    pub id: NodeId,
    /// The process (killed on drop).
    pub process: Child,
    /// Kept open until the runner wants the child gone.
    pub stdin: Option<ChildStdin>,
    /// gRPC address.
    pub grpc: String,
    /// Admin HTTP address.
    pub admin: String,
}

impl ChildNode {
    /// The process's peak resident memory so far (`VmHWM` in `/proc/PID/status`, Linux), in
    /// bytes; `None` where that is not available.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let pid = self.process.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        let kib: u64 = line
            .trim_start_matches("VmHWM:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }
}

#[derive(Deserialize)]
struct Listening {
    grpc: String,
    admin: String,
}

/// How long a child may take to load its data and announce its ports.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a child may take to answer `/readyz` once it has the peer table.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How the runner starts `byzsgd-node` children for one job.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `byzsgd-node` executable.
    pub executable: PathBuf,
    /// The job manifest, canonical.
    pub job_file: PathBuf,
    /// `--data-dir` override.
    pub data_dir: Option<PathBuf>,
    /// Where children's lines go.
    pub output: mpsc::Sender<ChildOutput>,
    /// `--linger-seconds` of every child.
    pub linger_seconds: f64,
    /// Handed to children as `BYZSGD_CHAOS_TOKEN` (jobs that allow chaos only).
    pub chaos_token: Option<String>,
    /// Servers' `--checkpoint-dir` (the run directory's `checkpoints/`).
    pub checkpoint_dir: PathBuf,
    /// The job's CA, which issues every child its certificate (also a restarted one); None
    /// runs the children with `--insecure` (the transport benchmark only).
    pub ca: Option<Arc<JobCa>>,
}

impl Launcher {
    /// Starts every node of a job on free ports and sends them the peer table. They serve but
    /// take no step until [`go`].
    pub async fn spawn_all(&self, nodes: &[NodeId]) -> anyhow::Result<Vec<ChildNode>> {
        // Start everyone first: each child loads the data set before it binds, in parallel.
        let mut starting = Vec::with_capacity(nodes.len());
        for &id in nodes {
            starting.push(self.spawn_one(id, None)?);
        }
        let mut children = Vec::with_capacity(nodes.len());
        for (child, announced) in starting {
            children.push(announce(child, announced).await?);
        }
        let table = peer_table(&children);
        for child in &mut children {
            let line = self.wiring_line(&table, child.id)?;
            send_line(child, &line).await?;
        }
        Ok(children)
    }

    /// Starts `old`'s node again on its ports, wires it with the job's `table` (see
    /// [`peer_table`]) and lets it go at once.
    pub async fn respawn(&self, old: &ChildNode, table: &PeerTable) -> anyhow::Result<ChildNode> {
        let (child, announced) = self.spawn_one(old.id, Some((&old.grpc, &old.admin)))?;
        let mut child = announce(child, announced).await?;
        let line = self.wiring_line(table, child.id)?;
        send_line(&mut child, &line).await?;
        send_line(&mut child, GO).await?;
        Ok(child)
    }

    /// The line a child reads after announcing its ports: everyone's address and its own
    /// credentials (`--peers-from-stdin`).
    fn wiring_line(&self, table: &PeerTable, id: NodeId) -> anyhow::Result<String> {
        let credentials = match &self.ca {
            Some(ca) => Some(
                ca.issue(id)
                    .with_context(|| format!("issuing the certificate of {id}"))?,
            ),
            None => None,
        };
        let line = serde_json::json!({ "peers": table.0, "credentials": credentials });
        Ok(format!("{line}\n"))
    }

    fn spawn_one(
        &self,
        id: NodeId,
        ports: Option<(&str, &str)>,
    ) -> anyhow::Result<(ChildNode, oneshot::Receiver<String>)> {
        let (grpc, admin) = ports.unwrap_or(("127.0.0.1:0", "127.0.0.1:0"));
        let mut command = Command::new(&self.executable);
        command
            .arg(match id.role {
                Role::Server => "server",
                Role::Worker => "worker",
            })
            .arg("--job-file")
            .arg(&self.job_file)
            .args(["--index", &id.index.to_string()])
            .args(["--listen", grpc, "--admin-listen", admin])
            .args(["--peers-from-stdin", "--progress-lines", "--linger-seconds"])
            .arg(self.linger_seconds.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.data_dir {
            command.arg("--data-dir").arg(dir);
        }
        if id.role == Role::Server {
            command.arg("--checkpoint-dir").arg(&self.checkpoint_dir);
        }
        if self.ca.is_none() {
            command.arg("--insecure");
        }
        if let Some(token) = &self.chaos_token {
            // The environment, not a flag: flags show in `ps`.
            command.env("BYZSGD_CHAOS_TOKEN", token);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            // Children's info logs would drown the progress bar; warnings still come through.
            command.env("RUST_LOG", "warn");
        }
        spawn_command(command, id, &self.executable, &self.output)
    }
}

/// The line that lets a wired child take its first step.
const GO: &str = "{\"go\":true}\n";

/// Every child's gRPC address by node name.
#[derive(Debug, Clone)]
pub struct PeerTable(BTreeMap<String, String>);

/// The addresses of `children`, which every child reads after announcing its ports.
pub fn peer_table(children: &[ChildNode]) -> PeerTable {
    PeerTable(
        children
            .iter()
            .map(|child| (child.id.to_string(), child.grpc.clone()))
            .collect(),
    )
}

/// Lets every wired child take its first step (children already gone are skipped).
pub async fn go(children: &mut [ChildNode]) {
    for child in children.iter_mut().filter(|child| child.stdin.is_some()) {
        if let Err(error) = send_line(child, GO).await {
            tracing::debug!(node = %child.id, %error, "cannot send the go line");
        }
    }
}

/// Waits until every child's `/readyz` answers 200.
pub async fn wait_ready(http: &reqwest::Client, children: &[ChildNode]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    for child in children {
        loop {
            let ready = http
                .get(format!("http://{}/readyz", child.admin))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} was not ready within {READY_TIMEOUT:?}", child.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Each live node's `/status`; a node that does not answer (exited, killed) is left out.
pub async fn statuses(http: &reqwest::Client, children: &[ChildNode]) -> BTreeMap<NodeId, Status> {
    let mut statuses = BTreeMap::new();
    for child in children {
        let Ok(response) = http
            .get(format!("http://{}/status", child.admin))
            .send()
            .await
        else {
            continue;
        };
        let Ok(bytes) = response.bytes().await else {
            continue;
        };
        if let Ok(status) = serde_json::from_slice::<Status>(&bytes) {
            statuses.insert(child.id, status);
        }
    }
    statuses
}

async fn send_line(child: &mut ChildNode, line: &str) -> anyhow::Result<()> {
    let stdin = child.stdin.as_mut().context("child stdin already closed")?;
    stdin
        .write_all(line.as_bytes())
        .await
        .with_context(|| format!("cannot write to {}", child.id))?;
    stdin.flush().await?;
    Ok(())
}

/// Waits for a child's first line and records its ports.
async fn announce(
    mut child: ChildNode,
    announced: oneshot::Receiver<String>,
) -> anyhow::Result<ChildNode> {
    let first = match tokio::time::timeout(ANNOUNCE_TIMEOUT, announced).await {
        Ok(Ok(line)) => line,
        Ok(Err(_)) => {
            let status = child.process.wait().await?;
            bail!(
                "{} exited ({status}) before announcing its ports; its log is above",
                child.id
            );
        }
        Err(_) => bail!(
            "{} did not announce its ports within {ANNOUNCE_TIMEOUT:?}",
            child.id
        ),
    };
    let listening: Listening = serde_json::from_str(&first)
        .with_context(|| format!("{} announced something unexpected: {first}", child.id))?;
    child.grpc = listening.grpc;
    child.admin = listening.admin;
    Ok(child)
}

fn spawn_command(
    mut command: Command,
    id: NodeId,
    executable: &Path,
    output: &mpsc::Sender<ChildOutput>,
) -> anyhow::Result<(ChildNode, oneshot::Receiver<String>)> {
    let mut process = command
        .spawn()
        .with_context(|| format!("cannot start {} for {id}", executable.display()))?;
    let stdin = process.stdin.take();
    let stdout = process.stdout.take().context("child stdout not captured")?;
    let stderr = process.stderr.take().context("child stderr not captured")?;

    let (announce, announced) = oneshot::channel();
    let progress = output.clone();
    tokio::spawn(async move {
        let mut stdout = BufReader::new(stdout).lines();
        match stdout.next_line().await {
            Ok(Some(first)) => {
                let _ = announce.send(first);
            }
            _ => return,
        }
        while let Ok(Some(line)) = stdout.next_line().await {
            if progress
                .send(ChildOutput::Progress(id, line))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = progress.send(ChildOutput::Closed(id)).await;
    });
    let logs = output.clone();
    tokio::spawn(async move {
        let mut stderr = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = stderr.next_line().await {
            if logs.send(ChildOutput::Log(id, line)).await.is_err() {
                return;
            }
        }
    });
    let child = ChildNode {
        id,
        process,
        stdin,
        grpc: String::new(),
        admin: String::new(),
    };
    Ok((child, announced))
}
