//! The node's contract with whoever runs and calls it — the operator, the local runner and the
//! experiment runner: the JSON of `GET /status`, the body and answer of `POST /chaos` on its
//! admin port (`/metrics`, `/healthz`, `/readyz` carry no typed body), and the exit codes a
//! pod's controller must tell apart.

use byzsgd_core::protocol::chaos::ChaosReport;
use serde::{Deserialize, Serialize};

use crate::chaos::{ChaosAction, Window};

/// Exit code of `byzsgd-node server|worker` when its data set cannot be read (missing,
/// unreadable or malformed IDX files): a configuration error that restarting cannot fix
/// (`EX_CONFIG` of sysexits.h). The first line of the node's termination message names the
/// file and the fix.
pub const EXIT_DATA_UNAVAILABLE: u8 = 78;

/// What `/status` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Job name.
    pub job: String,
    /// `server` or `worker`.
    pub role: String,
    /// Index within the role.
    pub index: usize,
    /// Step counter.
    pub step: u64,
    /// Last training loss.
    pub loss: Option<f32>,
    /// Last test accuracy (servers).
    pub accuracy: Option<f32>,
    /// Step of that accuracy.
    pub accuracy_step: Option<u64>,
    /// Last test loss (servers).
    pub test_loss: Option<f32>,
    /// Last gather (servers).
    pub last_gather: Option<GatherStatus>,
    /// The peers this node talks to.
    pub peers: Vec<String>,
    /// Whether the node ran all its steps.
    pub finished: bool,
    /// The attack this node runs, if any.
    pub byzantine: Option<String>,
    /// Messages dropped at the edge, by the protocol or by a chaos partition.
    pub rejected: u64,
    /// What chaos armed and where it acted; present only on nodes of jobs that allow chaos.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosReport>,
    /// The newest checkpoint this server wrote or resumed from (servers with a checkpoint
    /// directory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointStatus>,
    /// The checkpoint this server started from (a restarted server that found one of its own);
    /// unlike `checkpoint`, it never changes while the server runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<CheckpointStatus>,
    /// The final model this server exported, once it finished (servers with a checkpoint
    /// directory only): a 1-D float32 `.npy` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_model: Option<String>,
}

/// A checkpoint on the server's disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    /// Its step.
    pub step: u64,
    /// Its folder, as the node sees it (inside the pod: under the checkpoint volume's mount).
    pub path: String,
}

/// The last gather of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatherStatus {
    /// Gather step.
    pub step: u64,
    /// Distance to the median adopted.
    pub drift_to_median: f32,
}

/// Body of `POST /chaos`: the `action` and `window` of a `ByzantineChaos`, for this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChaosRequest {
    /// What to do: `attack` (with `name` and `params`), `silence`, `delay` (with `latency` and
    /// `jitter`) or `partition` (with `peers`). `crash` is the runner's or operator's.
    pub action: ChaosAction,
    /// Which steps: `fromStep` and optional `untilStep` (a `duration` is the caller's to end).
    #[serde(default)]
    pub window: Window,
}

/// Answer of a successful `POST /chaos`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChaosAccepted {
    /// The behaviour armed, as exported in `byzsgd_byzantine_active{attack}`.
    pub armed: String,
    /// First step it applies to.
    pub from_step: u64,
    /// First step it no longer applies to, if bounded.
    pub until_step: Option<u64>,
    /// The node's step when the order arrived.
    pub step: u64,
}
