//! Whether a job's pods got their data set, read from the pods' container statuses (pure): a
//! data image that cannot be pulled, a copy that failed, a claim that does not exist, or a node
//! that exited with [`EXIT_DATA_UNAVAILABLE`] because it cannot read the files. Each becomes the
//! `DataAvailable` condition naming the source and the fix; the ones no retry can fix fail the
//! job instead of leaving pods in a crash loop.

use byzsgd_api::{
    admin::EXIT_DATA_UNAVAILABLE,
    job::{DATA_MOUNT, DataSource},
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::build::pod::{DATA_INIT_CONTAINER, NODE_CONTAINER};

/// Kubelet reasons for a container that cannot start because of its image.
const IMAGE_REASONS: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "ImageInspectError",
];

/// What the pods say about their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataHealth {
    /// The job reads no files, or no pod got far enough to tell.
    Unknown,
    /// Some node container started after its data was in place.
    Loaded,
    /// A problem that may resolve itself (an image loaded later, a claim created later): the job
    /// waits.
    Waiting(DataProblem),
    /// A problem no restart fixes: the job fails.
    Broken(DataProblem),
}

/// One data problem: the condition's reason and a message naming the source and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataProblem {
    /// PascalCase reason.
    pub reason: &'static str,
    /// Human-readable text: which pod, which source, what went wrong, the fix.
    pub message: String,
}

/// The data health of a job's pods (`pods` sorted by name, so the first problem is stable).
pub fn diagnose<'a>(source: &DataSource, pods: impl IntoIterator<Item = &'a Pod>) -> DataHealth {
    let mut loaded = false;
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let Some(status) = &pod.status else {
            continue;
        };
        let init = status
            .init_container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == DATA_INIT_CONTAINER);
        let node = status
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == NODE_CONTAINER);
        if let Some(problem) = init.and_then(|c| init_problem(name, source, c)) {
            return problem;
        }
        if let Some(problem) = node.and_then(|c| node_problem(name, source, c)) {
            return problem;
        }
        if let Some(problem) = claim_problem(name, source, pod) {
            return problem;
        }
        loaded |= node.is_some_and(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        });
    }
    if loaded {
        DataHealth::Loaded
    } else {
        DataHealth::Unknown
    }
}

/// How a data source is named in messages.
pub fn describe(source: &DataSource) -> String {
    if let Some(image) = &source.image {
        format!("data image {}", image.image)
    } else if let Some(claim) = &source.persistent_volume_claim {
        format!("PersistentVolumeClaim {}", claim.claim_name)
    } else if let Some(host) = &source.host_path {
        format!("hostPath {}", host.path)
    } else {
        "no data source".to_owned()
    }
}

fn init_problem(pod: &str, source: &DataSource, init: &ContainerStatus) -> Option<DataHealth> {
    let state = init.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if IMAGE_REASONS.contains(&reason) {
            return Some(DataHealth::Waiting(DataProblem {
                reason: "DataImageUnavailable",
                message: format!(
                    "pod {pod}: the {} cannot be pulled ({reason}: {}); fix: load it into the \
                     cluster (`scripts/images`, then `ctr -n k8s.io images import` or `kind load \
                     image-archive`), or point spec.template.dataSource elsewhere",
                    describe(source),
                    waiting.message.as_deref().unwrap_or("no message")
                ),
            }));
        }
    }
    let failed = [
        state.terminated.as_ref(),
        init.last_state.as_ref().and_then(|s| s.terminated.as_ref()),
    ]
    .into_iter()
    .flatten()
    .find(|t| t.exit_code != 0)?;
    Some(DataHealth::Broken(DataProblem {
        reason: "DataCopyFailed",
        message: format!(
            "pod {pod}: copying the files of the {} into {DATA_MOUNT} failed (exit {}): {}; fix: \
             the image must hold the IDX files under spec.template.dataSource.image.path \
             (default /data/<dataset>) and /bin/busybox",
            describe(source),
            failed.exit_code,
            first_line(failed.message.as_deref())
        ),
    }))
}

fn node_problem(pod: &str, source: &DataSource, node: &ContainerStatus) -> Option<DataHealth> {
    let terminated = [
        node.state.as_ref().and_then(|s| s.terminated.as_ref()),
        node.last_state.as_ref().and_then(|s| s.terminated.as_ref()),
    ]
    .into_iter()
    .flatten()
    .find(|t| t.exit_code == i32::from(EXIT_DATA_UNAVAILABLE))?;
    Some(DataHealth::Broken(DataProblem {
        reason: "DataUnreadable",
        message: format!(
            "pod {pod}: the node cannot read the data set from the {}: {}; fix: make the IDX \
             files available there or change spec.template.dataSource",
            describe(source),
            first_line(terminated.message.as_deref())
        ),
    }))
}

fn claim_problem(pod: &str, source: &DataSource, status_pod: &Pod) -> Option<DataHealth> {
    let claim = source.persistent_volume_claim.as_ref()?;
    let unschedulable = status_pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let message = unschedulable.message.as_deref().unwrap_or_default();
    message.contains("persistentvolumeclaim").then(|| {
        DataHealth::Waiting(DataProblem {
            reason: "DataClaimUnavailable",
            message: format!(
                "pod {pod} cannot be scheduled: {message}; fix: create PersistentVolumeClaim \
                     {} in the job's namespace (bound, holding the IDX files) or change \
                     spec.template.dataSource",
                claim.claim_name
            ),
        })
    })
}

fn first_line(message: Option<&str>) -> String {
    let text = message.unwrap_or_default().trim();
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        "no message".to_owned()
    } else {
        line.to_owned()
    }
}
