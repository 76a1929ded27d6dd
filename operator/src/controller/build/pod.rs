//! One bare Pod per server and worker: the node CLI's args, identity (hostname/subdomain, and
//! its certificate Secret mounted at `/etc/byzsgd-tls`), labels, scrape annotations, probes,
//! the mounted manifest, the data set (an init container
//! copying a data image into an `emptyDir`, a PersistentVolumeClaim or a hostPath), and the
//! user's `spec.template` merged over secure defaults (non-root, read-only root file system, no
//! capabilities, resource requests).

use std::collections::BTreeMap;

use byzsgd_api::{
    identity::{self, TLS_DIR},
    job::{CHECKPOINT_MOUNT, CHECKPOINT_VOLUME, DATA_MOUNT, DataSource, ImageDataSource},
};
use byzsgd_core::{job::Role, protocol::NodeId};
use k8s_openapi::{
    api::core::v1::{
        Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
        EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource,
        PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Probe,
        ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource,
        SecurityContext, Volume, VolumeMount,
    },
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};
use kube::api::ObjectMeta;
use serde::{Serialize, de::DeserializeOwned};

use super::labels;
use crate::controller::validate::ValidatedJob;

/// The user and group every container runs as unless the template says otherwise (the images
/// of `scripts/images` own their files as this id).
const NON_ROOT_ID: i64 = 65532;
/// Name of the init container that copies a data image into the `data` volume.
pub const DATA_INIT_CONTAINER: &str = "data";
/// Name of the node container.
pub const NODE_CONTAINER: &str = "node";
/// Where Kubernetes reads a container's termination message; the node writes its fatal error
/// there (`--termination-log`).
const TERMINATION_LOG: &str = "/dev/termination-log";

/// How long a node keeps serving (its `/status` above all) after its last step before it
/// exits: longer than two status polls at the default `--status-interval-seconds` (10) plus
/// the request timeout, so the operator reads every server's final report, and the job's
/// STEP and ACCURACY end at the values the servers finished with.
pub const NODE_LINGER_SECONDS: u32 = 30;

/// The node's command line for one pod: what `byzsgd-node` parses (a contract test checks it
/// with the node's own clap definition).
pub fn args(role: Role, index: usize) -> Vec<String> {
    let mut args = vec![
        role.to_string(),
        "--job-file".to_owned(),
        format!("{}/{}", labels::JOB_DIR, labels::JOB_FILE),
        "--index".to_owned(),
        index.to_string(),
        "--peer-template".to_owned(),
        labels::peer_template(),
        "--listen".to_owned(),
        format!("0.0.0.0:{}", labels::GRPC_PORT),
        "--admin-listen".to_owned(),
        format!("0.0.0.0:{}", labels::ADMIN_PORT),
        "--log-format".to_owned(),
        "json".to_owned(),
        "--linger-seconds".to_owned(),
        NODE_LINGER_SECONDS.to_string(),
        "--tls-dir".to_owned(),
        TLS_DIR.to_owned(),
    ];
    if role == Role::Server {
        args.extend(["--checkpoint-dir".to_owned(), CHECKPOINT_MOUNT.to_owned()]);
    }
    args
}

/// The pod of `role` number `index`.
pub fn pod(job: &ValidatedJob, role: Role, index: usize) -> Pod {
    let name = labels::pod_name(&job.name, role, index);
    let attack = job.attack(role, index);
    let template = &job.template;
    let (volumes, mounts, init_containers) = volumes(job, role, index);

    // The template's labels and annotations first, so the operator's own win on a clash.
    let mut pod_labels = template.labels.clone();
    pod_labels.extend(labels::pod_labels(
        &job.name,
        role,
        index,
        attack.as_deref(),
    ));
    let mut annotations = template.annotations.clone();
    annotations.extend(labels::scrape_annotations());

    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(job.namespace.clone()),
            labels: Some(pod_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![job.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            hostname: Some(name),
            subdomain: Some(labels::service_name(&job.name)),
            // The kubelet restarts a crashed node in place (counted against backoffLimit);
            // a node that finished its steps exits 0 and stays Succeeded. A node that cannot
            // read its data exits 78, and the operator fails the job instead of letting it
            // restart forever.
            restart_policy: Some("OnFailure".to_owned()),
            // The node never talks to the API server, and a job's pods need no Service
            // environment variables.
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            init_containers: (!init_containers.is_empty()).then_some(init_containers),
            containers: vec![node_container(job, role, index, mounts)],
            volumes: Some(volumes),
            security_context: Some(pod_security_context(template.security_context.as_ref())),
            image_pull_secrets: (!template.image_pull_secrets.is_empty())
                .then(|| template.image_pull_secrets.clone()),
            node_selector: (!template.node_selector.is_empty())
                .then(|| template.node_selector.clone()),
            tolerations: (!template.tolerations.is_empty()).then(|| template.tolerations.clone()),
            affinity: template.affinity.clone(),
            service_account_name: template.service_account_name.clone(),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The pod's volumes, the node container's mounts and the init containers: the manifest, the
/// node's certificate, the data set, the template's own, and a server's checkpoint volume.
fn volumes(
    job: &ValidatedJob,
    role: Role,
    index: usize,
) -> (Vec<Volume>, Vec<VolumeMount>, Vec<Container>) {
    let template = &job.template;
    let mut volumes = vec![
        Volume {
            name: "job".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: labels::config_map_name(&job.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tls".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(identity::node_secret_name(
                    &job.name,
                    NodeId { role, index },
                )),
                // Readable by the pod's group (fsGroup) only: the key is in there.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "job".to_owned(),
            mount_path: labels::JOB_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tls".to_owned(),
            mount_path: TLS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    let mut init_containers = Vec::new();
    if let Some(source) = &job.data {
        let (volume, mount, init) = data_volume(job, source);
        volumes.push(volume);
        mounts.push(mount);
        init_containers.extend(init);
    }
    // The checkpoint volume is the servers': a worker pod does not hold it (a
    // ReadWriteOnce claim would otherwise pin every worker to the servers' node).
    volumes.extend(
        template
            .volumes
            .iter()
            .filter(|volume| role == Role::Server || volume.name != CHECKPOINT_VOLUME)
            .cloned(),
    );
    mounts.extend(template.volume_mounts.iter().cloned());
    if role == Role::Server {
        if !volumes
            .iter()
            .any(|volume| volume.name == CHECKPOINT_VOLUME)
        {
            volumes.push(Volume {
                name: CHECKPOINT_VOLUME.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
        }
        mounts.push(VolumeMount {
            name: CHECKPOINT_VOLUME.to_owned(),
            mount_path: CHECKPOINT_MOUNT.to_owned(),
            ..VolumeMount::default()
        });
    }

    (volumes, mounts, init_containers)
}

/// The `node` container: `byzsgd-node` with its args, ports, probes and mounts.
fn node_container(
    job: &ValidatedJob,
    role: Role,
    index: usize,
    mounts: Vec<VolumeMount>,
) -> Container {
    let template = &job.template;
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    Container {
        name: NODE_CONTAINER.to_owned(),
        image: Some(template.image.clone()),
        image_pull_policy: template.image_pull_policy.clone(),
        args: Some(args(role, index)),
        env: Some(env(job)),
        ports: Some(vec![
            port("grpc", labels::GRPC_PORT),
            port("admin", labels::ADMIN_PORT),
        ]),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: Some(resources(template.resources.as_ref())),
        security_context: Some(container_security_context(
            template.container_security_context.as_ref(),
        )),
        termination_message_path: Some(TERMINATION_LOG.to_owned()),
        // The node writes its own message on a fatal error; a crash that wrote none still
        // leaves the log's tail.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The pod's security context: the template's fields over non-root 65532 and the runtime's
/// default seccomp profile.
fn pod_security_context(template: Option<&PodSecurityContext>) -> PodSecurityContext {
    merged(
        PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NON_ROOT_ID),
            run_as_group: Some(NON_ROOT_ID),
            fs_group: Some(NON_ROOT_ID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        },
        template,
    )
}

/// An HTTP probe on the admin port.
fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

/// The `data` volume, its read-only mount in the node container at [`DATA_MOUNT`], and for an
/// image source the init container that fills it.
fn data_volume(
    job: &ValidatedJob,
    source: &DataSource,
) -> (Volume, VolumeMount, Option<Container>) {
    let mut volume = Volume {
        name: "data".to_owned(),
        ..Volume::default()
    };
    let mut mount = VolumeMount {
        name: "data".to_owned(),
        mount_path: DATA_MOUNT.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut init = None;
    if let Some(image) = &source.image {
        volume.empty_dir = Some(EmptyDirVolumeSource::default());
        init = Some(data_init_container(job, image));
    } else if let Some(claim) = &source.persistent_volume_claim {
        volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.claim_name.clone(),
            read_only: Some(true),
        });
        mount.sub_path.clone_from(&claim.sub_path);
    } else if let Some(host) = &source.host_path {
        // No `type`: a missing directory then reaches the node as an empty one, which exits 78
        // naming it; with `type: Directory` the pod would hang in ContainerCreating instead,
        // with the reason only in an event.
        volume.host_path = Some(HostPathVolumeSource {
            path: host.path.clone(),
            type_: None,
        });
    }
    (volume, mount, init)
}

/// The init container that copies the IDX files of a data image into the `data` volume (the
/// contract of the project's data images: the files under `path`, and `/bin/busybox`).
fn data_init_container(job: &ValidatedJob, image: &ImageDataSource) -> Container {
    let from = format!("{}/.", image.files_dir(job.plan.spec.dataset.name));
    Container {
        name: DATA_INIT_CONTAINER.to_owned(),
        image: Some(image.image.clone()),
        image_pull_policy: image.image_pull_policy.clone(),
        command: Some(
            ["/bin/busybox", "cp", "-r", &from, &format!("{DATA_MOUNT}/")]
                .map(str::to_owned)
                .to_vec(),
        ),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "10m"), ("memory", "16Mi")])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(container_security_context(None)),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".to_owned(),
            mount_path: DATA_MOUNT.to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// The node container's environment: the template's, then the operator's own, which win on a
/// name clash (the node's data directory, its termination log, the chaos token).
fn env(job: &ValidatedJob) -> Vec<EnvVar> {
    let mut own = vec![value("BYZSGD_TERMINATION_LOG", TERMINATION_LOG)];
    if job.data.is_some() {
        own.push(value("BYZSGD_DATA_DIR", DATA_MOUNT));
    }
    if job.plan.spec.chaos.allowed {
        // From the Secret, not a literal: the token must not show in the pod spec, which far
        // more users may read than the Secret.
        own.push(EnvVar {
            name: labels::CHAOS_TOKEN_ENV.to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: labels::chaos_token_secret_name(&job.name),
                    key: labels::CHAOS_TOKEN_KEY.to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    let mut env: Vec<EnvVar> = job
        .template
        .env
        .iter()
        .filter(|var| !own.iter().any(|o| o.name == var.name))
        .cloned()
        .collect();
    env.extend(own);
    env
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(name, amount)| ((*name).to_owned(), Quantity((*amount).to_owned())))
        .collect()
}

/// The node container's resources: requests `cpu: 100m`, `memory: 128Mi` unless the template
/// sets them, and the template's limits (none by default: a node's memory depends on the model
/// and the data set, and a wrong limit kills it).
fn resources(template: Option<&ResourceRequirements>) -> ResourceRequirements {
    let mut requests = quantities(&[("cpu", "100m"), ("memory", "128Mi")]);
    let mut resources = template.cloned().unwrap_or_default();
    requests.extend(resources.requests.take().unwrap_or_default());
    resources.requests = Some(requests);
    resources
}

/// A container's security context: the template's fields over the secure defaults.
fn container_security_context(template: Option<&SecurityContext>) -> SecurityContext {
    merged(
        SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            ..SecurityContext::default()
        },
        template,
    )
}

/// `overrides` merged over `defaults` field by field (JSON merge patch, RFC 7386, without
/// deletions): what users of `kubectl patch --type merge` expect of a partial security context.
fn merged<T: Serialize + DeserializeOwned + Clone>(defaults: T, overrides: Option<&T>) -> T {
    let Some(overrides) = overrides else {
        return defaults;
    };
    let (Ok(mut base), Ok(patch)) = (
        serde_json::to_value(&defaults),
        serde_json::to_value(overrides),
    ) else {
        return defaults;
    };
    merge_json(&mut base, patch);
    serde_json::from_value(base).unwrap_or(defaults)
}

fn merge_json(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(base), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                merge_json(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}
