//! Step 3 of the pipeline, the only step besides the status patch that writes: server-side
//! applies the desired objects with the one field manager [`FIELD_MANAGER`], creates the job's
//! CA and node certificates and the chaos token of jobs that allow chaos, and deletes the pods
//! the decision names.

use std::fmt::Write as _;

use byzsgd_api::{
    identity::{self, CA_FILE, CA_KEY_FILE},
    pki::JobCa,
};
use byzsgd_core::protocol::NodeId;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use rand::Rng as _;

use super::{
    build::{
        self, DesiredResources,
        labels::{self, FIELD_MANAGER},
    },
    validate::ValidatedJob,
};

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server-side apply was refused.
    #[error("failed to apply {kind} {name}")]
    Apply {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The job's CA could not be made or read, or a certificate not issued.
    #[error("the identities of job {job}")]
    Identity {
        /// The job.
        job: String,
        /// What failed.
        #[source]
        source: byzsgd_api::pki::PkiError,
    },
    /// The job's CA Secret exists but lacks a key or holds something else.
    #[error(
        "Secret {name} does not hold a CA (keys {CA_FILE} and {CA_KEY_FILE}); delete it and the node Secrets of the job to make new ones"
    )]
    BrokenCa {
        /// The Secret.
        name: String,
    },
    /// A delete was refused.
    #[error("failed to delete pod {name}")]
    Delete {
        /// The pod.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Applies and deletes objects of one job in one namespace.
pub struct Applier {
    services: Api<Service>,
    config_maps: Api<ConfigMap>,
    pods: Api<Pod>,
    secrets: Api<Secret>,
    params: PatchParams,
}

impl Applier {
    /// An applier for `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            services: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            // Force: the operator owns these objects; another manager's edit is overridden.
            params: PatchParams::apply(FIELD_MANAGER).force(),
        }
    }

    /// Applies the Service and the ConfigMap (idempotent, so every reconcile repairs them).
    pub async fn apply_shared(&self, desired: &DesiredResources) -> Result<(), Error> {
        let DesiredResources {
            service,
            config_map,
            pods: _,
        } = desired;
        let name = service.metadata.name.clone().unwrap_or_default();
        self.services
            .patch(&name, &self.params, &Patch::Apply(service))
            .await
            .map_err(|source| Error::Apply {
                kind: "Service",
                name,
                source,
            })?;
        let name = config_map.metadata.name.clone().unwrap_or_default();
        self.config_maps
            .patch(&name, &self.params, &Patch::Apply(config_map))
            .await
            .map_err(|source| Error::Apply {
                kind: "ConfigMap",
                name,
                source,
            })?;
        Ok(())
    }

    /// Creates the job's chaos-token Secret with a fresh random token if the job allows chaos
    /// and the Secret does not exist yet. Never rewrites an existing token: the running pods
    /// read it once, at start. Returns whether it created the Secret.
    pub async fn ensure_chaos_secret(&self, job: &ValidatedJob) -> Result<bool, Error> {
        let name = labels::chaos_token_secret_name(&job.name);
        if !job.plan.spec.chaos.allowed
            || self
                .secrets
                .get_opt(&name)
                .await
                .map_err(secret_error(&name))?
                .is_some()
        {
            return Ok(false);
        }
        // 32 bytes from the thread RNG (a CSPRNG seeded by the OS), as hex.
        let bytes: [u8; 32] = rand::rng().random();
        let token = bytes
            .iter()
            .fold(String::with_capacity(64), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            });
        let Some(secret) = build::chaos_secret(job, &token) else {
            return Ok(false);
        };
        // If another reconcile created it in between, its token stands.
        self.create_secret(&secret).await
    }

    /// Makes sure the job's CA Secret and the certificate Secrets of `nodes` (the pods about
    /// to be created) exist, creating the missing ones. Never rewrites one: a running pod keeps
    /// the certificate it started with, and every certificate chains to the one CA, also after
    /// an operator restart. Reads only the Secrets it names (no list): nothing when no pod is
    /// created. Returns how many Secrets it created.
    pub async fn ensure_identities(
        &self,
        job: &ValidatedJob,
        nodes: impl IntoIterator<Item = NodeId>,
    ) -> Result<usize, Error> {
        let nodes: Vec<NodeId> = nodes.into_iter().collect();
        if nodes.is_empty() {
            return Ok(0);
        }
        let ca_name = identity::ca_secret_name(&job.name);
        let pki = |source| Error::Identity {
            job: job.name.clone(),
            source,
        };
        let mut created = 0;
        let existing = self
            .secrets
            .get_opt(&ca_name)
            .await
            .map_err(secret_error(&ca_name))?;
        let ca = if let Some(secret) = existing {
            read_ca(job, &secret)?
        } else {
            let ca = JobCa::generate(&job.name).map_err(pki)?;
            if self.create_secret(&build::ca_secret(job, &ca)).await? {
                created += 1;
                ca
            } else {
                // Another reconcile made the CA in between: issue from that one.
                let secret = self
                    .secrets
                    .get(&ca_name)
                    .await
                    .map_err(secret_error(&ca_name))?;
                read_ca(job, &secret)?
            }
        };
        for node in nodes {
            let credentials = ca.issue(node).map_err(pki)?;
            // An existing Secret (a pod recreated) keeps its certificate.
            if self
                .create_secret(&build::node_secret(job, node, &credentials))
                .await?
            {
                created += 1;
            }
        }
        Ok(created)
    }

    /// Creates `secret`; false when it already exists (another reconcile was first).
    async fn create_secret(&self, secret: &Secret) -> Result<bool, Error> {
        match self.secrets.create(&PostParams::default(), secret).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(secret_error(
                secret.metadata.name.as_deref().unwrap_or_default(),
            )(source)),
        }
    }

    /// Creates (by server-side apply, so a repeat is harmless) the pods named in `names`, and
    /// returns each created pod's name and uid.
    pub async fn create_pods(
        &self,
        desired: &DesiredResources,
        names: impl Iterator<Item = &String>,
    ) -> Result<Vec<(String, String)>, Error> {
        let mut created = Vec::new();
        for name in names {
            let Some(pod) = desired
                .pods
                .iter()
                .find(|p| p.metadata.name.as_ref() == Some(name))
            else {
                continue;
            };
            let applied = self
                .pods
                .patch(name, &self.params, &Patch::Apply(pod))
                .await
                .map_err(|source| Error::Apply {
                    kind: "Pod",
                    name: name.clone(),
                    source,
                })?;
            created.push((name.clone(), applied.metadata.uid.unwrap_or_default()));
        }
        Ok(created)
    }

    /// Deletes the pods named in `names`; a pod already gone is not an error.
    pub async fn delete_pods(
        &self,
        names: impl Iterator<Item = &String>,
    ) -> Result<Vec<String>, Error> {
        let mut deleted = Vec::new();
        for name in names {
            match self.pods.delete(name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(name.clone()),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::Delete {
                        name: name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(deleted)
    }
}

/// Server-side applies `status` as the status subresource of `name`, owned by the operator's
/// field manager. One helper for every kind the operator reports on (jobs and chaos).
pub async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(super::build::labels::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Turns a refused call on Secret `name` into an [`Error`].
fn secret_error(name: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |source| Error::Apply {
        kind: "Secret",
        name: name.to_owned(),
        source,
    }
}

/// The job's CA from its Secret.
fn read_ca(job: &ValidatedJob, secret: &Secret) -> Result<JobCa, Error> {
    let text = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
    };
    let (Some(cert), Some(key)) = (text(CA_FILE), text(CA_KEY_FILE)) else {
        return Err(Error::BrokenCa {
            name: identity::ca_secret_name(&job.name),
        });
    };
    JobCa::from_pem(&job.name, &cert, &key).map_err(|source| Error::Identity {
        job: job.name.clone(),
        source,
    })
}
