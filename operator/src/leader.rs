//! Leader election on a `coordination.k8s.io/v1` Lease, so only one of several operator
//! replicas reconciles (kube-runtime 5 ships no elector).
//!
//! Acquiring and renewing are server-side applies that carry the `resourceVersion` just read:
//! the API server refuses the write (409) if another replica changed the Lease in between, so
//! two replicas can never both believe they won. Expiry is judged on this replica's own
//! monotonic clock — a Lease counts as expired once its holder and renewTime have not changed
//! for `leaseDurationSeconds` as seen here — so clock skew between machines does not matter.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use tokio::sync::Mutex;

use crate::controller::build::labels::FIELD_MANAGER;

/// Settings of the elector.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Name of the Lease.
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (pod name or a random id).
    pub holder: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (well inside `duration`).
    pub renew_every: Duration,
}

/// What this replica last saw of the Lease, and when (on its own clock).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    holder: Option<String>,
    renew: Option<MicroTime>,
    at: Instant,
}

/// A Lease-based elector.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    seen: Mutex<Option<Seen>>,
}

impl Elector {
    /// An elector for `config`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            seen: Mutex::new(None),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn lease(&self, spec: LeaseSpec, resource_version: Option<String>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                resource_version,
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        }
    }

    /// Acquires or renews the lease once; true if this replica holds it afterwards.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration = i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = self.lease(
                LeaseSpec {
                    holder_identity: Some(self.config.holder.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                },
                None,
            );
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.config.holder.as_str());
        if !mine && holder.is_some() && !self.expired(&spec).await {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let renewed = self.lease(
            LeaseSpec {
                holder_identity: Some(self.config.holder.clone()),
                lease_duration_seconds: Some(duration),
                acquire_time: if mine {
                    spec.acquire_time.clone()
                } else {
                    Some(now.clone())
                },
                renew_time: Some(now),
                lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
                ..LeaseSpec::default()
            },
            current.metadata.resource_version.clone(),
        );
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match self
            .api
            .patch(&self.config.name, &params, &Patch::Apply(&renewed))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Whether `spec` has not changed for a lease duration on this replica's clock.
    async fn expired(&self, spec: &LeaseSpec) -> bool {
        let mut seen = self.seen.lock().await;
        let holder = spec.holder_identity.clone();
        let renew = spec.renew_time.clone();
        match seen.as_ref() {
            Some(s) if s.holder == holder && s.renew == renew => {
                let ttl = spec
                    .lease_duration_seconds
                    .map_or(self.config.duration, |s| {
                        Duration::from_secs(u64::try_from(s).unwrap_or(0))
                    });
                s.at.elapsed() >= ttl
            }
            _ => {
                *seen = Some(Seen {
                    holder,
                    renew,
                    at: Instant::now(),
                });
                false
            }
        }
    }

    /// Gives the lease up (if held), so a standby replica takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.holder.as_str()) {
            return Ok(());
        }
        let released = self.lease(
            LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: spec.lease_duration_seconds,
                acquire_time: spec.acquire_time.clone(),
                renew_time: spec.renew_time.clone(),
                lease_transitions: spec.lease_transitions,
                ..LeaseSpec::default()
            },
            current.metadata.resource_version.clone(),
        );
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(&self.config.name, &params, &Patch::Apply(&released))
            .await
            .map(|_| ())
    }
}
