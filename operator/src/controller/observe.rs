//! Reads what the pods say about training: each server's JSON `/status` (the node's
//! `runtime::Status`, camelCase), fetched over HTTP from a URL built from a template. This is
//! the only IO of the status step besides the patch itself.

use std::time::Duration;

use byzsgd_core::job::Role;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

/// The part of a node's `/status` the operator reads. Unknown fields are ignored, so the node
/// may add fields freely.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// Step counter.
    #[serde(default)]
    pub step: u64,
    /// Last training loss.
    #[serde(default)]
    pub loss: Option<f64>,
    /// Last test accuracy.
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// Last gather.
    #[serde(default)]
    pub last_gather: Option<GatherReport>,
    /// Whether the node ran all its steps.
    #[serde(default)]
    pub finished: bool,
    /// The newest checkpoint the server wrote or resumed from.
    #[serde(default)]
    pub checkpoint: Option<CheckpointReport>,
}

/// A server's newest checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointReport {
    /// Its step.
    #[serde(default)]
    pub step: u64,
}

/// A server's last gather.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatherReport {
    /// Gather step.
    #[serde(default)]
    pub step: u64,
    /// Distance of the server's model to the median it adopted.
    #[serde(default)]
    pub drift_to_median: Option<f64>,
}

/// Expands the status URL template for one pod. Placeholders: `{podIP}`, `{pod}`,
/// `{namespace}`, `{job}`, `{role}`, `{index}`.
pub fn status_url(
    template: &str,
    pod_ip: &str,
    pod: &str,
    namespace: &str,
    job: &str,
    role: Role,
    index: usize,
) -> String {
    template
        .replace("{podIP}", pod_ip)
        .replace("{pod}", pod)
        .replace("{namespace}", namespace)
        .replace("{job}", job)
        .replace("{role}", role.as_str())
        .replace("{index}", &index.to_string())
}

/// Fetches the reports of the given server pods concurrently; a server that does not answer
/// within `timeout`, or answers with something else than its status, is left out.
pub async fn fetch_reports(
    http: &reqwest::Client,
    template: &str,
    namespace: &str,
    job: &str,
    servers: &[(usize, &Pod)],
    timeout: Duration,
) -> Vec<(usize, NodeReport)> {
    let mut tasks = tokio::task::JoinSet::new();
    for &(index, pod) in servers {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let url = status_url(template, &ip, &name, namespace, job, Role::Server, index);
        let http = http.clone();
        tasks.spawn(async move {
            let response = http.get(&url).timeout(timeout).send().await;
            let body = match response {
                Ok(response) if response.status().is_success() => response.bytes().await,
                Ok(response) => {
                    tracing::debug!(%url, status = %response.status(), "server status refused");
                    return None;
                }
                Err(error) => {
                    tracing::debug!(%url, %error, "server status unreachable");
                    return None;
                }
            };
            let report = body.ok().and_then(|b| serde_json::from_slice(&b).ok())?;
            Some((index, report))
        });
    }
    let mut reports: Vec<(usize, NodeReport)> =
        tasks.join_all().await.into_iter().flatten().collect();
    reports.sort_by_key(|(index, _)| *index);
    reports
}
