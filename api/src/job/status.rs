//! The status of a `ByzSGDJob`: conditions, per-role replica counts, the training progress
//! read from the servers, and the operator's own bookkeeping for `backoffLimit`. No IO.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator last observed of a job. Written only through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ByzSgdJobStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The job's state: the most important condition that is true (the `STATE` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Condition list (Created, Running, Restarting, Succeeded, Failed, Suspended,
    /// ResilienceBoundSatisfied, ByzantineInjected, Converged, DataAvailable). A condition's
    /// `lastTransitionTime` changes only when its status does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pod counts per role (`server`, `worker`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replica_statuses: BTreeMap<String, ReplicaStatus>,
    /// Training progress: the median over a quorum of n_ps − f_ps servers' reports, so one
    /// lying server cannot move it outside the correct servers' values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingStatus>,
    /// `f_ps/n_ps` as declared (the `SERVERS (F/N)` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<String>,
    /// `f_w/n_w` as declared (the `WORKERS (F/N)` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<String>,
    /// Pod recreations plus container restarts so far, counted against `runPolicy.backoffLimit`.
    /// Kept here so a restart of the operator does not reset it.
    #[serde(default)]
    pub restarts: i32,
    /// The pods counted so far, by name: which incarnation (uid) and how many of its container
    /// restarts are already in `restarts`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tracked_pods: BTreeMap<String, TrackedPod>,
    /// When the pods were first created (or the job last resumed); the deadline counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job reached Succeeded or Failed; the TTL counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// One pod incarnation already accounted for in `restarts`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackedPod {
    /// The pod's uid; a different uid under the same name is a recreation.
    pub uid: String,
    /// Container restarts of this incarnation already counted.
    #[serde(default)]
    pub container_restarts: i32,
}

/// Pod counts of one role (Kubeflow's `replicaStatuses`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Pods that exist and have not finished (Pending or Running).
    #[serde(default)]
    pub active: i32,
    /// Pods whose phase is Running.
    #[serde(default)]
    pub running: i32,
    /// Pods that finished successfully.
    #[serde(default)]
    pub succeeded: i32,
    /// Pods that failed.
    #[serde(default)]
    pub failed: i32,
    /// Label selector of the role's pods, for `kubectl get pods -l`.
    #[serde(default)]
    pub selector: String,
}

/// Training progress as reported by the servers' `/status`, combined robustly.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingStatus {
    /// Median step over the quorum.
    pub step: u64,
    /// Median training loss over the quorum reports that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Median test accuracy (0–1) over the quorum reports that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Median over the quorum of each server's distance to the model it adopted at its last
    /// gather (`lastGather.driftToMedian`): how far servers were apart when they last agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drift: Option<f64>,
    /// Median over the quorum of each server's newest checkpoint step: where a restart of
    /// every pod resumes (servers checkpoint every `spec.training.checkpointEvery` steps on
    /// their `checkpoints` volume). Unset until one of them has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_step: Option<u64>,
    /// How many server reports were combined (n_ps − f_ps).
    pub quorum: u32,
}

/// The job's state, the `STATE` column.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JobState {
    /// Objects are being created; not every pod runs yet.
    Created,
    /// Every pod runs.
    Running,
    /// Some pod is being recreated or restarted.
    Restarting,
    /// Pods deleted on request; the status is kept.
    Suspended,
    /// The quorum reached the convergence target (or, without one, finished its steps).
    Succeeded,
    /// Deadline, backoff limit, lost quorum, unreadable data or an invalid spec.
    Failed,
}

/// The condition types of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// Service, ConfigMap and pods were created.
    Created,
    /// Every pod runs.
    Running,
    /// Some pod is being recreated or restarted.
    Restarting,
    /// The job ended well.
    Succeeded,
    /// The job ended badly (the reason says why).
    Failed,
    /// The job is suspended.
    Suspended,
    /// The Byzantine nodes injected are within the declared f of each role.
    ResilienceBoundSatisfied,
    /// Some pods run an attack.
    ByzantineInjected,
    /// The quorum's accuracy reached the convergence target.
    Converged,
    /// The pods got the data set from `spec.template.dataSource` (False names the source, what
    /// went wrong and the fix).
    DataAvailable,
}

impl ConditionType {
    /// Every condition type, in the order they appear in the status.
    pub const ALL: [Self; 10] = [
        Self::Created,
        Self::Running,
        Self::Restarting,
        Self::Succeeded,
        Self::Failed,
        Self::Suspended,
        Self::ResilienceBoundSatisfied,
        Self::ByzantineInjected,
        Self::Converged,
        Self::DataAvailable,
    ];

    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Suspended => "Suspended",
            Self::ResilienceBoundSatisfied => "ResilienceBoundSatisfied",
            Self::ByzantineInjected => "ByzantineInjected",
            Self::Converged => "Converged",
            Self::DataAvailable => "DataAvailable",
        }
    }
}

impl JobState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::Suspended => "Suspended",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }

    /// Whether the job ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl ByzSgdJobStatus {
    /// The condition of `type_`, if set.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
    }

    /// Whether the condition `type_` is `True`.
    pub fn is_true(&self, type_: ConditionType) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

/// The median of the finite `values` (mean of the two middle ones for an even count); `None`
/// when none is finite. What STEP, ACCURACY and DRIFT show over a quorum of servers' reports,
/// and what the experiments and end-to-end tests compare against.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        f64::midpoint(values[mid - 1], values[mid])
    } else {
        values[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_takes_the_middle_and_ignores_what_is_not_finite() {
        assert_eq!(median([0.5, 1.0, 0.5, 0.6]), Some(0.55));
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([f64::NAN, 2.0, f64::INFINITY]), Some(2.0));
        assert_eq!(median([]), None);
        assert_eq!(median([f64::NAN]), None);
    }
}
