//! One bare Pod per server and worker: the node CLI's args, identity (hostname/subdomain),
//! labels, scrape annotations, probes and the mounted manifest.

use std::path::PathBuf;

use byzsgd_core::job::DatasetName;
use byzsgd_core::job::Role;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    HostPathVolumeSource, Pod, PodSpec, Probe, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

use super::labels;
use crate::controller::validate::ValidatedJob;

/// Where the Debian package `dataset-fashion-mnist` puts its files: the node's default
/// directory for `fashion-mnist` (DESIGN.md §3).
const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// How long a node keeps serving (its `/status` above all) after its last step before it
/// exits: longer than two status polls at the default `--status-interval-seconds` (10) plus
/// the request timeout, so the operator reads every server's final report, and the job's
/// STEP and ACCURACY end at the values the servers finished with.
pub const NODE_LINGER_SECONDS: u32 = 30;

/// The node's command line for one pod: what `byzsgd-node` parses (a contract test checks it
/// with the node's own clap definition).
pub fn args(role: Role, index: usize) -> Vec<String> {
    vec![
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
    ]
}

/// The pod of `role` number `index`.
pub fn pod(job: &ValidatedJob, role: Role, index: usize) -> Pod {
    let name = labels::pod_name(&job.name, role, index);
    let attack = job.attack(role, index);
    let template = &job.template;
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let mut volumes = vec![Volume {
        name: "job".to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: labels::config_map_name(&job.name),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "job".to_owned(),
        mount_path: labels::JOB_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    if let (Some(host_path), Some(data_dir)) = (&template.data_host_path, data_dir(job)) {
        volumes.push(Volume {
            name: "data".to_owned(),
            host_path: Some(HostPathVolumeSource {
                path: host_path.clone(),
                type_: Some("Directory".to_owned()),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "data".to_owned(),
            mount_path: data_dir.display().to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let env = env(job);
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(job.namespace.clone()),
            labels: Some(labels::pod_labels(
                &job.name,
                role,
                index,
                attack.as_deref(),
            )),
            annotations: Some(labels::scrape_annotations()),
            owner_references: Some(vec![job.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            hostname: Some(name),
            subdomain: Some(labels::service_name(&job.name)),
            // The kubelet restarts a crashed node in place (counted against backoffLimit);
            // a node that finished its steps exits 0 and stays Succeeded.
            restart_policy: Some("OnFailure".to_owned()),
            containers: vec![Container {
                name: "node".to_owned(),
                image: Some(template.image.clone()),
                image_pull_policy: template.image_pull_policy.clone(),
                args: Some(args(role, index)),
                env: (!env.is_empty()).then_some(env),
                ports: Some(vec![
                    port("grpc", labels::GRPC_PORT),
                    port("admin", labels::ADMIN_PORT),
                ]),
                readiness_probe: Some(probe("/readyz", 5)),
                liveness_probe: Some(probe("/healthz", 10)),
                resources: template.resources.clone(),
                volume_mounts: Some(mounts),
                ..Container::default()
            }],
            volumes: Some(volumes),
            node_selector: (!template.node_selector.is_empty())
                .then(|| template.node_selector.clone()),
            tolerations: (!template.tolerations.is_empty()).then(|| template.tolerations.clone()),
            service_account_name: template.service_account_name.clone(),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The node container's environment: the template's, plus the chaos token for jobs that allow
/// chaos.
fn env(job: &ValidatedJob) -> Vec<EnvVar> {
    let mut env = job.template.env.clone();
    if job.plan.spec.chaos.allowed {
        // From the Secret, not a literal: the token must not show in the pod spec, which far
        // more users may read than the Secret.
        env.push(EnvVar {
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
    env
}

/// The directory the node reads the data set from, if it reads files at all.
fn data_dir(job: &ValidatedJob) -> Option<PathBuf> {
    let dataset = &job.plan.spec.dataset;
    match (&dataset.path, dataset.name) {
        (Some(path), _) => Some(path.clone()),
        (None, DatasetName::FashionMnist) => Some(PathBuf::from(FASHION_MNIST_DIR)),
        (None, DatasetName::Mnist | DatasetName::Synthetic) => None,
    }
}
