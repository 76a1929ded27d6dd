//! The local runner's child processes: one `byzsgd-node server|worker` per node on loopback
//! ports it picks itself, wired with the two-step stdin handshake (the child announces its
//! ports, the runner answers with everyone's). Each child's stdin stays open for its whole
//! life: when the runner dies, even by SIGKILL, every child reads EOF and exits, so no child
//! outlives its runner.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use crate::job::Role;
use crate::protocol::NodeId;

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

#[derive(Deserialize)]
struct Listening {
    grpc: String,
    admin: String,
}

/// How long a child may take to load its data and announce its ports.
const ANNOUNCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Starts every node of a job and wires them. Output lines go to `output`.
pub async fn spawn_all(
    executable: &Path,
    job_file: &Path,
    data_dir: Option<&Path>,
    nodes: &[NodeId],
    output: &mpsc::Sender<ChildOutput>,
) -> anyhow::Result<Vec<ChildNode>> {
    // Start everyone first: each child loads the data set before it binds, in parallel.
    let mut starting = Vec::with_capacity(nodes.len());
    for &id in nodes {
        starting.push(spawn_one(executable, job_file, data_dir, id, output)?);
    }
    let mut children = Vec::with_capacity(nodes.len());
    for (mut child, announced) in starting {
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
        children.push(child);
    }
    let table: BTreeMap<String, String> = children
        .iter()
        .map(|child| (child.id.to_string(), child.grpc.clone()))
        .collect();
    let line = format!("{}\n", serde_json::json!({ "peers": table }));
    for child in &mut children {
        let stdin = child.stdin.as_mut().context("child stdin already closed")?;
        stdin
            .write_all(line.as_bytes())
            .await
            .with_context(|| format!("cannot send the peer table to {}", child.id))?;
        stdin.flush().await?;
    }
    Ok(children)
}

fn spawn_one(
    executable: &Path,
    job_file: &Path,
    data_dir: Option<&Path>,
    id: NodeId,
    output: &mpsc::Sender<ChildOutput>,
) -> anyhow::Result<(ChildNode, oneshot::Receiver<String>)> {
    let mut command = Command::new(executable);
    command
        .arg(match id.role {
            Role::Server => "server",
            Role::Worker => "worker",
        })
        .arg("--job-file")
        .arg(job_file)
        .args(["--index", &id.index.to_string()])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args([
            "--peers-from-stdin",
            "--progress-lines",
            "--linger-seconds",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = data_dir {
        command.arg("--data-dir").arg(dir);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        // Children's info logs would drown the progress bar; warnings still come through.
        command.env("RUST_LOG", "warn");
    }
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
