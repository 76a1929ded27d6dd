//! Step 2 of the pipeline, pure: turns a [`ValidatedJob`] into the objects the job needs — one
//! headless Service, one ConfigMap holding the manifest, one bare Pod per server and worker
//! (DESIGN.md §4), the Secrets of the job's identities (its CA, and each node's certificate
//! and key) and for jobs that allow chaos the Secret holding their chaos token. Random values
//! (the token, the keys) are drawn by `apply`, which alone may not be pure. Every object
//! carries the controller owner reference, so deleting the job garbage-collects them all.

pub mod labels;
pub mod pod;

use std::collections::BTreeMap;

use byzsgd_api::{
    identity::{self, CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE},
    pki::{JobCa, NodeCredentials},
};
use byzsgd_core::{job::Role, protocol::NodeId};
use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Pod, Secret, Service, ServicePort, ServiceSpec},
};
use kube::api::ObjectMeta;

use super::validate::ValidatedJob;

/// Everything a job owns, as it should be.
#[derive(Debug, Clone)]
pub struct DesiredResources {
    /// The headless Service giving each pod a stable DNS name.
    pub service: Service,
    /// The manifest the pods read.
    pub config_map: ConfigMap,
    /// Servers first, then workers, each by index.
    pub pods: Vec<Pod>,
}

/// Builds every object of `job`.
pub fn build(job: &ValidatedJob) -> DesiredResources {
    let pods = [Role::Server, Role::Worker]
        .into_iter()
        .flat_map(|role| (0..job.replicas(role)).map(move |index| pod::pod(job, role, index)))
        .collect();
    DesiredResources {
        service: service(job),
        config_map: config_map(job),
        pods,
    }
}

fn metadata(job: &ValidatedJob, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(job.namespace.clone()),
        labels: Some(labels::job_labels(&job.name)),
        owner_references: Some(vec![job.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// The headless Service `<job>`: pods set it as their subdomain, so `<pod>.<job>` resolves.
/// It publishes not-ready addresses because nodes only turn ready once they reach their peers.
pub fn service(job: &ValidatedJob) -> Service {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name.to_owned()),
        ),
        ..ServicePort::default()
    };
    Service {
        metadata: metadata(job, labels::service_name(&job.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(BTreeMap::from([(
                labels::JOB_LABEL.to_owned(),
                job.name.clone(),
            )])),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                port("grpc", labels::GRPC_PORT),
                port("admin", labels::ADMIN_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The ConfigMap `<job>-job` holding the manifest under `job.yaml`.
pub fn config_map(job: &ValidatedJob) -> ConfigMap {
    ConfigMap {
        metadata: metadata(job, labels::config_map_name(&job.name)),
        data: Some(BTreeMap::from([(
            labels::JOB_FILE.to_owned(),
            job.manifest.clone(),
        )])),
        ..ConfigMap::default()
    }
}

/// The Secret `<job>-chaos-token` holding `token` under [`labels::CHAOS_TOKEN_KEY`]; owned by
/// the job, so it goes with it. `None` when the job does not allow chaos.
pub fn chaos_secret(job: &ValidatedJob, token: &str) -> Option<Secret> {
    job.plan.spec.chaos.allowed.then(|| Secret {
        metadata: metadata(job, labels::chaos_token_secret_name(&job.name)),
        data: Some(BTreeMap::from([(
            labels::CHAOS_TOKEN_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    })
}

/// The Secret `<job>-ca` holding the job CA's certificate and key: the operator issues every
/// node's certificate from it, also a node added or a certificate lost after an operator
/// restart. No pod mounts it.
pub fn ca_secret(job: &ValidatedJob, ca: &JobCa) -> Secret {
    Secret {
        metadata: metadata(job, identity::ca_secret_name(&job.name)),
        data: Some(BTreeMap::from([
            (
                CA_FILE.to_owned(),
                ByteString(ca.cert_pem().as_bytes().to_vec()),
            ),
            (
                CA_KEY_FILE.to_owned(),
                ByteString(ca.key_pem().into_bytes()),
            ),
        ])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// The Secret `<job>-<role>-<index>-tls` (type `kubernetes.io/tls`, plus `ca.crt`) the pod of
/// `node` mounts at [`identity::TLS_DIR`].
pub fn node_secret(job: &ValidatedJob, node: NodeId, credentials: &NodeCredentials) -> Secret {
    let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
    Secret {
        metadata: metadata(job, identity::node_secret_name(&job.name, node)),
        data: Some(BTreeMap::from([
            (CA_FILE.to_owned(), bytes(&credentials.ca)),
            (CERT_FILE.to_owned(), bytes(&credentials.cert)),
            (KEY_FILE.to_owned(), bytes(&credentials.key)),
        ])),
        type_: Some("kubernetes.io/tls".to_owned()),
        ..Secret::default()
    }
}
