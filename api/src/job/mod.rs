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

use byzsgd_core::job::{DatasetName, DatasetSpec, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use status::{
    ByzSgdJobStatus, ConditionType, JobState, ReplicaStatus, TrackedPod, TrainingStatus,
};

use crate::validate::SpecProblem;

/// The image pods run when `spec.template.image` is not set: what `scripts/images` builds and
/// tags with the workspace version.
pub const DEFAULT_IMAGE: &str = concat!("localhost/byzsgd-node:", env!("CARGO_PKG_VERSION"));
/// The data image of `fashion-mnist` when `spec.template.dataSource` is not set (also built by
/// `scripts/images`, same version).
pub const DEFAULT_FASHION_MNIST_IMAGE: &str = concat!(
    "localhost/byzsgd-data-fashion-mnist:",
    env!("CARGO_PKG_VERSION")
);

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

/// The pod-level settings shared by every server and worker pod: Kubeflow's replica `template`
/// fields that matter here, each merged over the operator's defaults (the operator's own labels,
/// probes and required environment always stay). Ignored by `byzsgd-node local`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Labels added to every pod. The operator's own labels (`byzsgd.io/*`,
    /// `app.kubernetes.io/*`) win on a clash: Services and dashboards select by them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every pod (the operator's `prometheus.io/*` scrape annotations
    /// win on a clash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Container image holding the `byzsgd-node` binary (`scripts/images` builds
    /// `localhost/byzsgd-node:<version>`, the default).
    #[serde(default = "default_image")]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; unset leaves Kubernetes' default (`IfNotPresent`
    /// for a tag other than `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Secrets for pulling the node and data images from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// CPU and memory of the node container, merged key by key over the defaults (requests
    /// `cpu: 100m`, `memory: 128Mi`; no limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the node container (e.g. `RUST_LOG`). The operator's
    /// own (`BYZSGD_DATA_DIR`, `BYZSGD_CHAOS_TOKEN`, `BYZSGD_TERMINATION_LOG`) win on a clash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node labels the pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod (anti-)affinity of the pods, e.g. to spread servers over zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Service account of the pods; unset uses the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Pod security context, merged field by field over the defaults (`runAsNonRoot: true`,
    /// user and group 65532, `seccompProfile: RuntimeDefault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Security context of the node container, merged field by field over the defaults
    /// (`readOnlyRootFilesystem: true`, `allowPrivilegeEscalation: false`, every capability
    /// dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
    /// Extra volumes of every pod. The names `job`, `data` and `tls` are the operator's. A
    /// volume named `checkpoints` is where servers keep their checkpoints and final model
    /// (mounted at `/var/lib/byzsgd/checkpoints`, servers only): a PersistentVolumeClaim (on
    /// one node, or `ReadWriteMany`) or a hostPath keeps them across pod deletions, so a job
    /// whose every pod was killed resumes from them. Unset: an `emptyDir`, which survives
    /// container restarts only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Extra mounts of the node container (of `volumes` above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Where the pods get the data set's IDX files. Unset: for `fashion-mnist` the data image
    /// `localhost/byzsgd-data-fashion-mnist:<version>` (built by `scripts/images`); `mnist`
    /// needs one; `synthetic` reads no files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<DataSource>,
}

/// Where a job's pods read the data set from. Exactly one source; the node reads the files at
/// [`DATA_MOUNT`] in every case.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.image) ? 1 : 0) + (has(self.persistentVolumeClaim) ? 1 : 0) + (has(self.hostPath) ? 1 : 0) == 1",
    "message": "set exactly one of image, persistentVolumeClaim and hostPath",
}]))]
pub struct DataSource {
    /// An image holding the IDX files: an init container copies them into an `emptyDir` the
    /// node reads. No node needs the files beforehand; the image is pulled like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageDataSource>,
    /// A PersistentVolumeClaim holding the IDX files, mounted read-only (several pods read it,
    /// so it needs `ReadOnlyMany` or a single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimDataSource>,
    /// A directory on every Kubernetes node holding the IDX files, mounted read-only. Only for
    /// single-node or pre-provisioned clusters: the files must exist on whichever node a pod
    /// lands on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathDataSource>,
}

/// The data set as an image (`spec.template.dataSource.image`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageDataSource {
    /// The image, e.g. `localhost/byzsgd-data-fashion-mnist:0.1.0` (`scripts/images`).
    pub image: String,
    /// Directory inside the image holding the IDX files. Default: `/data/<dataset name>`, the
    /// layout of the images `scripts/images` builds. The image must also hold
    /// `/bin/busybox` (the init container runs its `cp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Pull policy of the data image; unset leaves Kubernetes' default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
}

/// The data set on a PersistentVolumeClaim (`spec.template.dataSource.persistentVolumeClaim`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimDataSource {
    /// Name of the claim, in the job's namespace.
    pub claim_name: String,
    /// Directory inside the volume holding the IDX files; unset: its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// The data set in a directory of each Kubernetes node (`spec.template.dataSource.hostPath`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPathDataSource {
    /// The directory, e.g. `/usr/share/datasets/fashion-mnist` where the Debian package
    /// `dataset-fashion-mnist` installs it.
    pub path: String,
}

/// Where every data source is mounted in the node container (`BYZSGD_DATA_DIR`).
pub const DATA_MOUNT: &str = "/dataset";

/// The volume servers keep checkpoints on: the template's, if it has one of this name, or an
/// `emptyDir`.
pub const CHECKPOINT_VOLUME: &str = "checkpoints";

/// Where servers mount [`CHECKPOINT_VOLUME`] (`--checkpoint-dir`).
pub const CHECKPOINT_MOUNT: &str = "/var/lib/byzsgd/checkpoints";

/// Volume names the operator gives its own volumes (the manifest, the data set, the node's
/// certificate).
pub const RESERVED_VOLUMES: [&str; 3] = ["job", "data", "tls"];

impl PodTemplate {
    /// The data source the pods use: the template's, or the default of the job's data set.
    /// `Ok(None)` when the data set needs no files (`synthetic`).
    pub fn resolved_data_source(
        &self,
        dataset: &DatasetSpec,
    ) -> Result<Option<DataSource>, SpecProblem> {
        if dataset.name == DatasetName::Synthetic {
            return Ok(None);
        }
        if let Some(source) = &self.data_source {
            return Ok(Some(source.clone()));
        }
        match dataset.name {
            DatasetName::FashionMnist => Ok(Some(DataSource {
                image: Some(ImageDataSource {
                    image: DEFAULT_FASHION_MNIST_IMAGE.to_owned(),
                    path: None,
                    image_pull_policy: None,
                }),
                ..DataSource::default()
            })),
            DatasetName::Mnist | DatasetName::Synthetic => Err(SpecProblem {
                field: "spec.template.dataSource".to_owned(),
                message: format!(
                    "data set `{}` has no default data source in a cluster",
                    dataset_name(dataset.name)
                ),
                fix: "set dataSource to an image, a persistentVolumeClaim or a hostPath holding \
                      the IDX files"
                    .to_owned(),
            }),
        }
    }

    /// Everything wrong with the template, each naming its field and the fix: a missing data
    /// source, a volume named like the operator's own, a mount of a volume that does not exist.
    pub fn problems(&self, dataset: &DatasetSpec) -> Vec<SpecProblem> {
        let mut problems = Vec::new();
        if let Err(problem) = self.resolved_data_source(dataset) {
            problems.push(problem);
        }
        for (i, volume) in self.volumes.iter().enumerate() {
            if RESERVED_VOLUMES.contains(&volume.name.as_str()) {
                problems.push(SpecProblem {
                    field: format!("spec.template.volumes[{i}].name"),
                    message: format!(
                        "`{}` is the name of a volume the operator adds",
                        volume.name
                    ),
                    fix: "rename the volume (and its mounts)".to_owned(),
                });
            }
        }
        for (i, mount) in self.volume_mounts.iter().enumerate() {
            if !self.volumes.iter().any(|volume| volume.name == mount.name) {
                problems.push(SpecProblem {
                    field: format!("spec.template.volumeMounts[{i}].name"),
                    message: format!(
                        "mounts `{}`, which spec.template.volumes does not define",
                        mount.name
                    ),
                    fix: "add the volume to spec.template.volumes or fix the name".to_owned(),
                });
            }
            if mount.name == CHECKPOINT_VOLUME {
                problems.push(SpecProblem {
                    field: format!("spec.template.volumeMounts[{i}].name"),
                    message: format!(
                        "servers mount the `{CHECKPOINT_VOLUME}` volume at {CHECKPOINT_MOUNT} \
                         themselves, and worker pods do not have it"
                    ),
                    fix: "remove this mount; keep the volume in spec.template.volumes".to_owned(),
                });
            }
            if [
                JOB_DIR,
                DATA_MOUNT,
                CHECKPOINT_MOUNT,
                crate::identity::TLS_DIR,
            ]
            .contains(&mount.mount_path.as_str())
            {
                problems.push(SpecProblem {
                    field: format!("spec.template.volumeMounts[{i}].mountPath"),
                    message: format!(
                        "{} is where the operator mounts its own volume",
                        mount.mount_path
                    ),
                    fix: "mount the volume elsewhere".to_owned(),
                });
            }
        }
        problems
    }
}

impl ImageDataSource {
    /// The directory inside the image the init container copies: `path`, or the layout of the
    /// project's data images, `/data/<dataset name>`.
    pub fn files_dir(&self, dataset: DatasetName) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/data/{}", dataset_name(dataset)))
    }
}

/// A data set's manifest name (`fashion-mnist`, `mnist`, `synthetic`).
fn dataset_name(name: DatasetName) -> &'static str {
    match name {
        DatasetName::FashionMnist => "fashion-mnist",
        DatasetName::Mnist => "mnist",
        DatasetName::Synthetic => "synthetic",
    }
}

/// Where the node pods' manifest is mounted (`--job-file` is `JOB_DIR/job.yaml`).
pub const JOB_DIR: &str = "/etc/byzsgd";

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

impl Default for PodTemplate {
    fn default() -> Self {
        Self {
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            image: default_image(),
            image_pull_policy: None,
            image_pull_secrets: Vec::new(),
            resources: None,
            env: Vec::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            service_account_name: None,
            security_context: None,
            container_security_context: None,
            volumes: Vec::new(),
            volume_mounts: Vec::new(),
            data_source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;
    use crate::manifest::{GROUP, Manifest};

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
        assert_eq!(job.spec.template.image, "localhost/byzsgd-node:0.1.0");
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
