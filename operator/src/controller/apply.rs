//! Step 3 of the pipeline, the only step besides the status patch that writes: server-side
//! applies the desired objects with the one field manager [`FIELD_MANAGER`], creates the chaos
//! token of jobs that allow chaos, and deletes the pods the decision names.

use std::fmt::Write as _;

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
        let fail = |source| Error::Apply {
            kind: "Secret",
            name: name.clone(),
            source,
        };
        if !job.plan.spec.chaos.allowed
            || self.secrets.get_opt(&name).await.map_err(fail)?.is_some()
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
        match self.secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(true),
            // Another reconcile created it in between; its token stands.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(fail(source)),
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
