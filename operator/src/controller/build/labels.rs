//! The only place label keys, annotation keys, object names and the field manager are defined.

use std::collections::BTreeMap;

use byzsgd_core::job::Role;

/// The one field manager every server-side apply of the operator uses.
pub const FIELD_MANAGER: &str = "byzsgd-operator";
/// `app.kubernetes.io/name` of node pods.
pub const APP_NAME: &str = "byzsgd-node";
/// Label: the job a pod belongs to.
pub const JOB_LABEL: &str = "byzsgd.io/job";
/// Label: `server` or `worker`.
pub const ROLE_LABEL: &str = "byzsgd.io/role";
/// Label: the pod's index within its role.
pub const INDEX_LABEL: &str = "byzsgd.io/index";
/// Label on pods that run an attack; its value is the attack's name (for dashboards).
pub const BYZANTINE_LABEL: &str = "byzsgd.io/byzantine";
/// Port of the node's gRPC server.
pub const GRPC_PORT: i32 = 7070;
/// Port of the node's admin server (`/metrics`, `/healthz`, `/readyz`, `/status`).
pub const ADMIN_PORT: i32 = 9090;
/// Where the job manifest is mounted in node pods (defined with the API's reserved paths).
pub use byzsgd_api::job::JOB_DIR;
/// File name of the manifest inside the ConfigMap and [`JOB_DIR`].
pub const JOB_FILE: &str = "job.yaml";

/// Environment variable the node reads its chaos token from (`node/src/admin.rs`).
pub const CHAOS_TOKEN_ENV: &str = "BYZSGD_CHAOS_TOKEN";
/// Key of the token inside the chaos-token Secret.
pub const CHAOS_TOKEN_KEY: &str = "token";

/// Name of the Secret holding the bearer token of a job's `/chaos` endpoints (only jobs that
/// allow chaos have one).
pub fn chaos_token_secret_name(job: &str) -> String {
    format!("{job}-chaos-token")
}

/// Name of the pod of `role` number `index` of `job`: `<job>-<role>-<index>`, which is also its
/// hostname, so `<job>-<role>-<index>.<job>` resolves through the headless Service.
pub fn pod_name(job: &str, role: Role, index: usize) -> String {
    // The node's identity name: its certificate names the same string.
    byzsgd_api::identity::node_name(job, byzsgd_core::protocol::NodeId { role, index })
}

/// Name of the headless Service (and so the pods' subdomain): the job's own name.
pub fn service_name(job: &str) -> String {
    job.to_owned()
}

/// Name of the ConfigMap holding the manifest.
pub fn config_map_name(job: &str) -> String {
    format!("{job}-job")
}

/// The peer template handed to every node; the node substitutes `{job}`, `{role}`, `{index}`.
pub fn peer_template() -> String {
    format!("{{job}}-{{role}}-{{index}}.{{job}}:{GRPC_PORT}")
}

/// Labels shared by every object of `job` (recommended labels plus `byzsgd.io/job`).
pub fn job_labels(job: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), job.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
        (JOB_LABEL.to_owned(), job.to_owned()),
    ])
}

/// Selector of every pod of `job`.
pub fn job_selector(job: &str) -> String {
    format!("{JOB_LABEL}={job}")
}

/// Selector of the pods of one role.
pub fn role_selector(job: &str, role: Role) -> String {
    format!("{JOB_LABEL}={job},{ROLE_LABEL}={role}")
}

/// Labels of one pod.
pub fn pod_labels(
    job: &str,
    role: Role,
    index: usize,
    attack: Option<&str>,
) -> BTreeMap<String, String> {
    let mut labels = job_labels(job);
    labels.insert("app.kubernetes.io/component".to_owned(), role.to_string());
    labels.insert(ROLE_LABEL.to_owned(), role.to_string());
    labels.insert(INDEX_LABEL.to_owned(), index.to_string());
    if let Some(attack) = attack {
        labels.insert(BYZANTINE_LABEL.to_owned(), attack.to_owned());
    }
    labels
}

/// Prometheus scrape annotations of node pods.
pub fn scrape_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), ADMIN_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ])
}
