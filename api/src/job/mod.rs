//! The `ByzSGDJob` custom resource (group `byzsgd.io`, version `v1alpha1`; DESIGN.md §4).
//!
//! The training part of the spec *is* the node's [`JobSpec`], flattened in, so the file that
//! `byzsgd-node local` runs is the file `kubectl apply` accepts ("one manifest, two runtimes").
//! Around it the operator adds the pod-level fields the local runner ignores: [`RunPolicy`]
//! (Kubeflow's names, ANCHORS.md §1.1) and [`PodTemplate`]. The API server enforces the paper's
//! bounds through the CEL rules of [`cel`]. Every field's `///` is its `kubectl explain` text.
//! No IO here.

pub mod cel;
pub mod status;

use std::collections::BTreeMap;

use byzsgd_core::job::JobSpec;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use status::{
    ByzSgdJobStatus, ConditionType, JobState, ReplicaStatus, TrackedPod, TrainingStatus,
};

/// The image pods run when `spec.template.image` is not set.
pub const DEFAULT_IMAGE: &str = "byzsgd-node:dev";

/// A ByzSGD training job: parameter servers and workers, some of them possibly Byzantine,
/// training one model (El-Mhamdi et al., "Genuinely Distributed Byzantine Machine Learning",
/// PODC 2020).
// Each printcolumn repeats `type_`; clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "byzsgd.io",
    version = "v1alpha1",
    kind = "ByzSGDJob",
    root = "ByzSgdJob",
    plural = "byzsgdjobs",
    shortname = "bsgd",
    category = "byzsgd",
    namespaced,
    status = "ByzSgdJobStatus",
    doc = "A ByzSGD training job: parameter servers and workers, some possibly Byzantine.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.training.step"),
    printcolumn(
        name = "Accuracy",
        type_ = "number",
        json_path = ".status.training.accuracy"
    ),
    printcolumn(
        name = "Drift",
        type_ = "number",
        json_path = ".status.training.maxDrift"
    ),
    printcolumn(
        name = "Servers (f/n)",
        type_ = "string",
        json_path = ".status.servers",
        description = "declared Byzantine servers f_ps / servers n_ps"
    ),
    printcolumn(
        name = "Workers (f/n)",
        type_ = "string",
        json_path = ".status.workers",
        description = "declared Byzantine workers f_w / workers n_w"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = cel::add_rules)]
pub struct ByzSgdJobSpec {
    /// The training part, shared with `byzsgd-node local`: model, dataset, training, mode,
    /// servers, workers, aggregation, inject, convergence.
    #[serde(flatten)]
    pub job: JobSpec,
    /// How the operator runs the pods: deadline, retries, clean-up, suspension (Kubeflow's
    /// `runPolicy`). Ignored by `byzsgd-node local`.
    #[serde(default)]
    pub run_policy: RunPolicy,
    /// What every server and worker pod looks like. Ignored by `byzsgd-node local`.
    #[serde(default)]
    pub template: PodTemplate,
}

/// Which pods stay when the job ends (Kubeflow's `cleanPodPolicy`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CleanPodPolicy {
    /// Keep every pod (their logs stay readable).
    #[default]
    None,
    /// Delete the pods that still run; keep the finished ones.
    Running,
    /// Delete every pod.
    All,
}

/// Run policy, with Kubeflow's field names and meanings (ANCHORS.md §1.1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    /// Seconds the job may be active (since its pods were first created, or since it was last
    /// resumed) before it is marked Failed with reason DeadlineExceeded. Unset: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// How many pod recreations and container restarts (summed over all pods) are tolerated;
    /// one more marks the job Failed with reason BackoffLimitExceeded. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backoff_limit: Option<i32>,
    /// Seconds after the job finished (Succeeded or Failed) before the operator deletes it, and
    /// with it every object it owns. Unset: kept forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// Which pods are deleted when the job finishes: `None` (default), `Running` or `All`.
    #[serde(default)]
    pub clean_pod_policy: CleanPodPolicy,
    /// True deletes every pod and keeps the status; false (re)creates them.
    #[serde(default)]
    pub suspend: bool,
}

/// The pod-level settings shared by every server and worker pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Container image holding the `byzsgd-node` binary.
    #[serde(default = "default_image")]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; unset leaves Kubernetes' default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// CPU and memory requests and limits of the node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the node container (e.g. `RUST_LOG`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node labels the pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Service account of the pods; unset uses the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// A directory on each Kubernetes node holding the data set's IDX files, mounted read-only
    /// where `dataset.path` (or the data set's default directory) points. Unset: the image must
    /// contain the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_host_path: Option<String>,
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

impl Default for PodTemplate {
    fn default() -> Self {
        Self {
            image: default_image(),
            image_pull_policy: None,
            resources: None,
            env: Vec::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            service_account_name: None,
            data_host_path: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use crate::manifest::{GROUP, Manifest};

    use super::*;

    const QUICKSTART: &str = include_str!("../../../examples/quickstart.yaml");

    /// One manifest, two runtimes: the quickstart parses as a resource, and its training part is
    /// exactly what `byzsgd-node local` reads from the same file.
    #[test]
    fn quickstart_parses_as_resource_and_as_local_manifest() {
        let job: ByzSgdJob = serde_yaml_ng::from_str(QUICKSTART).expect("quickstart parses");
        let local = Manifest::parse(QUICKSTART, "quickstart").expect("local parse");
        assert_eq!(job.spec.job, local.spec);
        assert_eq!(job.spec.run_policy.backoff_limit, Some(3));
        assert_eq!(job.spec.template.image, DEFAULT_IMAGE);
    }

    #[test]
    fn run_policy_and_template_default_when_absent() {
        let text = include_str!("../../tests/fixtures/minimal.yaml");
        let job: ByzSgdJob = serde_yaml_ng::from_str(text).expect("minimal parses");
        assert_eq!(job.spec.run_policy, RunPolicy::default());
        assert_eq!(job.spec.template.image, "byzsgd-node:dev");
    }

    #[test]
    fn crd_names_columns_and_subresources_are_as_documented() {
        let crd = ByzSgdJob::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.names.kind, "ByzSGDJob");
        assert_eq!(crd.spec.names.plural, "byzsgdjobs");
        assert_eq!(crd.spec.names.short_names, Some(vec!["bsgd".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<String> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.to_uppercase())
            .collect();
        assert_eq!(
            columns,
            [
                "STATE",
                "STEP",
                "ACCURACY",
                "DRIFT",
                "SERVERS (F/N)",
                "WORKERS (F/N)",
                "AGE"
            ]
        );
        let schema = serde_json::to_string(&version.schema).expect("schema serialises");
        assert!(
            !schema.contains("oneOf") && !schema.contains("anyOf"),
            "non-structural union left in the schema"
        );
        assert!(schema.contains("x-kubernetes-int-or-string"));
    }

    /// The API server applies schema defaults; a default of one model kind (the MLP's
    /// `hidden`) applied to another would make the node reject the manifest.
    #[test]
    fn variant_fields_of_tagged_unions_carry_no_default() {
        let crd = serde_json::to_value(ByzSgdJob::crd()).expect("crd serialises");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let hidden = &spec["properties"]["model"]["properties"]["hidden"];
        assert!(hidden.is_object(), "model.hidden missing from the schema");
        assert!(
            hidden.get("default").is_none(),
            "model.hidden has a default: {hidden}"
        );
    }
}
