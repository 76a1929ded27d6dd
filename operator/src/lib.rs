//! # byzsgd-operator
//!
//! The Kubernetes operator that turns `ByzSGDJob` resources into ByzSGD parameter-server and
//! worker pods (El-Mhamdi et al., "Genuinely Distributed Byzantine Machine Learning", PODC
//! 2020), and reports their training progress honestly: as the median over a quorum of
//! servers, so one lying server cannot fake it.
//!
//! # Layout
//!
//! The resource types, their validation, CEL admission rules, status and CRDs are
//! `byzsgd-api`'s (shared with the node and the experiment runner). **Must not depend on**
//! `byzsgd-node`: the operator image carries no gRPC, plotting or training code.
//!
//! Modules, bottom to top (a module imports only modules above it in this list):
//!
//! - [`metrics`] and [`admin`] — `/metrics`, `/healthz`, `/readyz`.
//! - [`controller`] — the reconcile pipeline `validate → build → apply → status`.
//! - [`leader`] — Lease-based leader election.
//! - [`chaos`] — the `ByzantineChaos` controller (observe → decide → arm/disarm/crash → status).
//! - [`cli`] — `byzsgd-operator crd` and `byzsgd-operator run`.
//!
//! Glossary (as everywhere in the workspace): server = parameter server; worker; step (the
//! paper's t); gather; GAR = aggregation rule; f = number of Byzantine nodes of a role.

pub mod metrics;
pub mod admin;
pub mod controller;
pub mod leader;
pub mod chaos;
pub mod cli;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
};

use byzsgd_api::{chaos::ByzantineChaos, job::ByzSgdJob};
pub use controller::ReconcilerConfig;
use kube::{Api, Client, api::ListParams};
pub use leader::LeaseConfig;
use tokio::sync::watch;

/// Settings of [`run`].
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// Watch only this namespace; `None` watches all.
    pub watch_namespace: Option<String>,
    /// Serve `/metrics`, `/healthz`, `/readyz` here.
    pub metrics_listen: Option<SocketAddr>,
    /// Elect a leader through this Lease before reconciling; `None` reconciles at once.
    pub leader_election: Option<LeaseConfig>,
    /// Settings of the reconciler.
    pub reconciler: ReconcilerConfig,
}

/// Why the operator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The ByzantineChaos CRD is not installed (or not readable with the operator's RBAC).
    #[error(
        "cannot list ByzantineChaos; is its CRD installed? Install it with \
         `kubectl apply -f crds/byzantinechaos.byzsgd.io.yaml` (or `byzsgd-operator crd | kubectl apply -f -`)"
    )]
    ChaosCrdMissing(#[source] kube::Error),
    /// The CRD is not installed (or not readable with the operator's RBAC).
    #[error(
        "cannot list ByzSGDJobs; is the CRD installed? Install it with \
         `kubectl apply -f crds/byzsgdjobs.byzsgd.io.yaml` (or `byzsgd-operator crd | kubectl apply -f -`)"
    )]
    CrdMissing(#[source] kube::Error),
    /// The metrics registry could not be built.
    #[error("failed to register the metrics")]
    Metrics(#[from] prometheus::Error),
    /// `--metrics-listen` could not be bound.
    #[error("cannot bind --metrics-listen {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another replica took the lease: this one stops so it never reconciles alongside it.
    #[error("lost the leader lease {name}; stopping so only one replica reconciles")]
    LostLease {
        /// The Lease.
        name: String,
    },
}

/// Runs the operator until `shutdown` completes: checks the CRD, serves the admin endpoints,
/// waits for the lease if asked, then reconciles.
pub async fn run(
    client: Client,
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let jobs: Api<ByzSgdJob> = match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    jobs.list(&ListParams::default().limit(1))
        .await
        .map_err(RunError::CrdMissing)?;
    let experiments: Api<ByzantineChaos> = match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    experiments
        .list(&ListParams::default().limit(1))
        .await
        .map_err(RunError::ChaosCrdMissing)?;

    // One shutdown signal, many listeners (admin server, elector, controller).
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let registry = metrics::registry();
    let metrics = metrics::Metrics::register(&registry)?;
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        let state = Arc::new(admin::AdminState {
            registry: registry.clone(),
            ready: AtomicBool::new(true),
        });
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            if let Err(error) = admin::serve(listener, state, stop).await {
                tracing::error!(%error, "admin server failed");
            }
        });
    }

    let elector = config
        .leader_election
        .map(|lease| Arc::new(leader::Elector::new(client.clone(), lease)));
    let (lost_tx, lost_rx) = watch::channel(false);
    if let Some(elector) = &elector {
        if !acquire(elector, stop_rx.clone()).await {
            return Ok(());
        }
        tracing::info!(lease = %elector.config().name, holder = %elector.config().holder, "leading");
        tokio::spawn(renew(elector.clone(), lost_tx, stop_rx.clone()));
    }

    // Both controllers stop on shutdown or on a lost lease.
    let halt = || {
        let stop = stopped(stop_rx.clone());
        let lost = stopped(lost_rx.clone());
        async move {
            tokio::select! {
                () = stop => {}
                () = lost => {}
            }
        }
    };
    tokio::join!(
        controller::run_controller(
            client.clone(),
            config.watch_namespace.as_deref(),
            config.reconciler.clone(),
            metrics.clone(),
            halt(),
        ),
        chaos::run_controller(
            client,
            config.watch_namespace.as_deref(),
            config.reconciler,
            metrics,
            halt(),
        ),
    );

    if let Some(elector) = &elector {
        if *lost_rx.borrow() {
            return Err(RunError::LostLease {
                name: elector.config().name.clone(),
            });
        }
        if let Err(error) = elector.release().await {
            tracing::warn!(%error, "cannot release the lease");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits until this replica holds the lease; false if shutdown came first.
async fn acquire(elector: &leader::Elector, mut stop: watch::Receiver<bool>) -> bool {
    loop {
        match elector.try_acquire().await {
            Ok(true) => return true,
            Ok(false) => tracing::debug!("another replica leads; waiting"),
            Err(error) => tracing::warn!(%error, "cannot read the lease"),
        }
        tokio::select! {
            () = tokio::time::sleep(elector.config().renew_every) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
    }
}

/// Renews the lease; signals `lost` once another replica holds it or renewal failed for a
/// whole lease duration.
async fn renew(
    elector: Arc<leader::Elector>,
    lost: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_success = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(elector.config().renew_every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match elector.try_acquire().await {
            Ok(true) => last_success = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!("another replica took the lease");
                let _ = lost.send(true);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot renew the lease");
                if last_success.elapsed() >= elector.config().duration {
                    let _ = lost.send(true);
                    return;
                }
            }
        }
    }
}
