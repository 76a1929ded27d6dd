//! The chaos controller's HTTP side: `POST /chaos` (arm) and `DELETE /chaos` (disarm) on the
//! selected nodes' admin endpoint (`node/src/admin.rs`), with the job's bearer token. The URL
//! comes from the `--chaos-url-template` flag, with the placeholders of the status URL.

use std::time::Duration;

use byzsgd_api::admin::ChaosRequest;
use byzsgd_core::job::Role;

use super::decide::TargetPod;
use crate::controller::observe::status_url;

/// Why a node did not take an order.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node did not answer (not up yet, network): worth retrying.
    #[error("pod {pod} did not answer at {url}; the operator retries")]
    Unreachable {
        /// The pod.
        pod: String,
        /// The URL tried.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with a server error: worth retrying.
    #[error("pod {pod} failed at {url} with {status}: {body}")]
    ServerError {
        /// The pod.
        pod: String,
        /// The URL tried.
        url: String,
        /// HTTP status.
        status: u16,
        /// The node's message.
        body: String,
    },
    /// The node refused the order (bad token, chaos not allowed, bad action): retrying the
    /// same order cannot help, so the experiment fails with the node's message.
    #[error("pod {pod} refused the chaos order with {status}: {body}")]
    Refused {
        /// The pod.
        pod: String,
        /// HTTP status.
        status: u16,
        /// The node's message, which names the problem and the fix.
        body: String,
    },
}

/// Where the order goes and with which credentials.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// The URL template.
    pub template: &'a str,
    /// The job's namespace.
    pub namespace: &'a str,
    /// The job's name.
    pub job: &'a str,
    /// The role of the selected nodes.
    pub role: Role,
    /// The job's chaos token.
    pub token: &'a str,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Endpoint<'_> {
    fn url(&self, pod: &TargetPod) -> String {
        status_url(
            self.template,
            &pod.ip,
            &pod.name,
            self.namespace,
            self.job,
            self.role,
            pod.index,
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder, pod: &TargetPod) -> Result<(), Error> {
        let url = self.url(pod);
        let response = request
            .bearer_auth(self.token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|source| Error::Unreachable {
                pod: pod.name.clone(),
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let pod = pod.name.clone();
        if status.is_client_error() {
            Err(Error::Refused {
                pod,
                status: status.as_u16(),
                body,
            })
        } else {
            Err(Error::ServerError {
                pod,
                url,
                status: status.as_u16(),
                body,
            })
        }
    }

    /// Sends `POST /chaos` with `request` to every pod, in order; stops at the first error.
    /// Arming twice is harmless (the node replaces its order), so a retry resends to all.
    pub async fn arm(
        &self,
        http: &reqwest::Client,
        pods: &[TargetPod],
        request: &ChaosRequest,
    ) -> Result<(), Error> {
        // Serialising a ChaosRequest cannot fail (plain data, string keys); an empty body would
        // be refused by the node with a message, never silently accepted.
        let body = serde_json::to_vec(request).unwrap_or_default();
        for pod in pods {
            let post = http
                .post(self.url(pod))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            self.send(post, pod).await?;
        }
        Ok(())
    }

    /// Sends `DELETE /chaos` to every pod; returns the failures (best effort: a pod that is
    /// gone has nothing left to cancel).
    pub async fn disarm(&self, http: &reqwest::Client, pods: &[TargetPod]) -> Vec<Error> {
        let mut failures = Vec::new();
        for pod in pods {
            if let Err(error) = self.send(http.delete(self.url(pod)), pod).await {
                failures.push(error);
            }
        }
        failures
    }
}
