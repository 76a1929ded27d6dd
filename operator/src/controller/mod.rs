//! The controller driver: it runs the `validate → build → apply → status` pipeline for every
//! `ByzSGDJob` (STYLE.md §2.3, after zookeeper-operator), each step in its own submodule.
//! `validate`, `build` and the status decision are pure; `apply` and the status patch write;
//! `observe` reads the servers' `/status`.

pub mod apply;
pub mod build;
pub mod data;
pub mod observe;
pub mod status;
pub mod validate;
pub mod drift;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use build::labels::{self, FIELD_MANAGER};
use byzsgd_api::job::{ByzSgdJob, TrackedPod};
use byzsgd_core::job::Role;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Pod, Service},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::{
        controller::{Action, Controller},
        events::{Event, EventType, Recorder, Reporter},
        reflector::Store,
        watcher,
    },
};
use status::{Decision, Observed};
use tokio_stream::StreamExt;

use crate::metrics::Metrics;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing the job's pods failed.
    #[error("failed to list the pods of job {job}")]
    ListPods {
        /// The job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Applying or deleting children failed.
    #[error("failed to apply the children of job {job}")]
    Apply {
        /// The job.
        job: String,
        /// What failed.
        #[source]
        source: apply::Error,
    },
    /// Writing the status failed.
    #[error("failed to patch the status of job {job}")]
    PatchStatus {
        /// The job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting the job after its TTL failed.
    #[error("failed to delete job {job} after its TTL")]
    DeleteJob {
        /// The job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The job object lacks a namespace or uid.
    #[error("cannot reconcile job {job}")]
    Malformed {
        /// The job.
        job: String,
        /// What is missing.
        #[source]
        source: validate::Error,
    },
}

impl Error {
    /// A bounded label for metrics and event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ListPods { .. } => "list_pods",
            Self::Apply { .. } => "apply",
            Self::PatchStatus { .. } => "patch_status",
            Self::DeleteJob { .. } => "delete_job",
            Self::Malformed { .. } => "malformed",
        }
    }
}

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// URL of a server's `/status`, with placeholders `{podIP}`, `{pod}`, `{namespace}`,
    /// `{job}`, `{role}`, `{index}`.
    pub status_url_template: String,
    /// URL of a node's `/chaos`, with the same placeholders as `status_url_template`.
    pub chaos_url_template: String,
    /// URL of a server's model snapshot, with the same placeholders plus `{step}`.
    pub model_url_template: String,
    /// How often a running job's servers are polled.
    pub poll_interval: Duration,
    /// Timeout of one `/status` request.
    pub status_timeout: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            status_url_template: "http://{podIP}:9090/status".to_owned(),
            chaos_url_template: "http://{podIP}:9090/chaos".to_owned(),
            model_url_template: "http://{podIP}:9090/model?step={step}".to_owned(),
            poll_interval: Duration::from_secs(10),
            status_timeout: Duration::from_secs(2),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Events on jobs.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// HTTP client for the servers' `/status`.
    pub http: reqwest::Client,
    /// Settings.
    pub config: ReconcilerConfig,
    /// The controller's cache of jobs (for the `jobs{phase}` gauge).
    pub store: Store<ByzSgdJob>,
}

async fn publish(
    ctx: &Context,
    job: &ByzSgdJob,
    warning: bool,
    reason: &str,
    note: String,
    action: &str,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(%error, reason, "cannot publish event");
    }
}

/// Reconciles one job: validate → build → apply → status.
#[tracing::instrument(skip_all, fields(job = %job.name_any(), namespace = job.namespace().unwrap_or_default()))]
pub async fn reconcile(job: Arc<ByzSgdJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let _timer = ctx.metrics.duration.start_timer();
    let result = reconcile_inner(&job, &ctx).await;
    let jobs = ctx.store.state();
    ctx.metrics
        .set_jobs(jobs.iter().map(|j| j.status.as_ref().and_then(|s| s.state)));
    ctx.metrics.retain_drift(
        &jobs
            .iter()
            .map(|j| (j.namespace().unwrap_or_default(), j.name_any()))
            .collect(),
    );
    result
}

async fn reconcile_inner(job: &ByzSgdJob, ctx: &Context) -> Result<Action, Error> {
    let name = job.name_any();
    let jobs: Api<ByzSgdJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let now = Timestamp::now();

    // 1. validate
    let validated = match validate::validate_job(job) {
        Ok(validated) => validated,
        Err(error @ (validate::Error::InvalidSpec { .. } | validate::Error::Manifest { .. })) => {
            let message = error_chain(&error);
            let (new_status, changed) =
                status::invalid(job.status.as_ref(), job.metadata.generation, &message, now);
            patch_status(&jobs, &name, &new_status).await?;
            if changed {
                publish(ctx, job, true, "InvalidSpec", message, "Validate").await;
            }
            // The spec is immutable, so only a new object can fix this.
            return Ok(Action::await_change());
        }
        Err(source) => return Err(Error::Malformed { job: name, source }),
    };

    // 2. build
    let desired = build::build(&validated);

    // Observe the pods and the servers.
    let (pods, reports) = observe_job(job, &validated, ctx).await?;
    measure_drift(ctx, &validated, &pods, &reports).await;

    let Decision {
        status: mut new_status,
        create,
        delete,
        delete_job,
        requeue,
        notes,
    } = status::decide(
        &validated,
        &Observed {
            previous: job.status.as_ref(),
            pods: &pods,
            reports: &reports,
            now,
            poll: ctx.config.poll_interval,
        },
    );

    // 3. apply
    let applier = apply::Applier::new(ctx.client.clone(), &validated.namespace);
    let wrap = |source| Error::Apply {
        job: name.clone(),
        source,
    };
    let terminal = new_status
        .state
        .is_some_and(byzsgd_api::job::JobState::is_terminal);
    if !terminal || !delete_job {
        applier.apply_shared(&desired).await.map_err(wrap)?;
    }
    // Before the pods: they mount their certificates and read the token when they start.
    if !terminal {
        ensure_secrets(ctx, job, &applier, &validated, &create)
            .await
            .map_err(wrap)?;
    }
    let created = applier
        .create_pods(&desired, create.iter())
        .await
        .map_err(wrap)?;
    let deleted = applier.delete_pods(delete.iter()).await.map_err(wrap)?;
    // Track each incarnation from its creation, not from the next reconcile: a pod deleted
    // before the operator lists it again must still count as a retry against backoffLimit.
    for (pod, uid) in &created {
        new_status.tracked_pods.insert(
            pod.clone(),
            TrackedPod {
                uid: uid.clone(),
                container_restarts: 0,
            },
        );
    }

    // 4. status
    patch_status(&jobs, &name, &new_status).await?;
    publish_all(ctx, job, &created, &deleted, notes).await;
    if delete_job {
        publish(
            ctx,
            job,
            false,
            "DeletedJob",
            "ttlSecondsAfterFinished passed".to_owned(),
            "Delete",
        )
        .await;
        match jobs.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => return Err(Error::DeleteJob { job: name, source }),
        }
        return Ok(Action::await_change());
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Creates the Secrets the pods about to be created need: the job's CA and their certificates,
/// and the chaos token of a job that allows chaos; one event per kind created.
async fn ensure_secrets(
    ctx: &Context,
    job: &ByzSgdJob,
    applier: &apply::Applier,
    validated: &validate::ValidatedJob,
    create: &BTreeSet<String>,
) -> Result<(), apply::Error> {
    let name = &validated.name;
    let nodes = create
        .iter()
        .filter_map(|pod| byzsgd_api::identity::parse_node_name(name, pod));
    let created = applier.ensure_identities(validated, nodes).await?;
    if created > 0 {
        let note = format!(
            "created {created} Secret(s) of the job's CA and node certificates ({})",
            byzsgd_api::identity::ca_secret_name(name)
        );
        publish(ctx, job, false, "CreatedIdentities", note, "Create").await;
    }
    if applier.ensure_chaos_secret(validated).await? {
        let note = format!(
            "created Secret {} (the chaos token)",
            labels::chaos_token_secret_name(name)
        );
        publish(ctx, job, false, "CreatedChaosToken", note, "Create").await;
    }
    Ok(())
}

/// Publishes one event per created and deleted pod, and one per transition.
async fn publish_all(
    ctx: &Context,
    job: &ByzSgdJob,
    created: &[(String, String)],
    deleted: &[String],
    notes: Vec<status::Note>,
) {
    for (pod, _) in created {
        let note = format!("created pod {pod}");
        publish(ctx, job, false, "CreatedPod", note, "Create").await;
    }
    for pod in deleted {
        let note = format!("deleted pod {pod}");
        publish(ctx, job, false, "DeletedPod", note, "Delete").await;
    }
    for note in notes {
        publish(
            ctx,
            job,
            note.warning,
            &note.reason,
            note.message,
            "Reconcile",
        )
        .await;
    }
}

/// Lists the job's pods and, while the job runs, fetches its running servers' reports.
async fn observe_job(
    job: &ByzSgdJob,
    validated: &validate::ValidatedJob,
    ctx: &Context,
) -> Result<(BTreeMap<String, Pod>, Vec<(usize, observe::NodeReport)>), Error> {
    let name = &validated.name;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &validated.namespace);
    let listed = pods_api
        .list(&ListParams::default().labels(&labels::job_selector(name)))
        .await
        .map_err(|source| Error::ListPods {
            job: name.clone(),
            source,
        })?;
    let pods: BTreeMap<String, Pod> = listed
        .items
        .into_iter()
        .filter_map(|p| Some((p.metadata.name.clone()?, p)))
        .collect();
    let active = job
        .status
        .as_ref()
        .and_then(|s| s.state)
        .is_none_or(|s| !s.is_terminal())
        && !validated.run_policy.suspend;
    if !active {
        return Ok((pods, Vec::new()));
    }
    let servers = running_servers(validated, &pods);
    let reports = observe::fetch_reports(
        &ctx.http,
        &ctx.config.status_url_template,
        &validated.namespace,
        name,
        &servers,
        ctx.config.status_timeout,
    )
    .await;
    Ok((pods, reports))
}

/// Sets `byzsgd_correct_servers_max_drift` of the job when its servers answered (it runs) and
/// their models at a common step can be compared.
async fn measure_drift(
    ctx: &Context,
    validated: &validate::ValidatedJob,
    pods: &BTreeMap<String, Pod>,
    reports: &[(usize, observe::NodeReport)],
) {
    if reports.is_empty() {
        return;
    }
    let servers = running_servers(validated, pods);
    let measured = drift::measure(
        &ctx.http,
        &ctx.config.model_url_template,
        validated,
        &servers,
        reports,
        ctx.config.status_timeout,
    )
    .await;
    if let Some(drift) = measured {
        ctx.metrics
            .set_drift(&validated.namespace, &validated.name, drift);
    }
}

/// The job's server pods in phase Running, by index.
fn running_servers<'a>(
    validated: &validate::ValidatedJob,
    pods: &'a BTreeMap<String, Pod>,
) -> Vec<(usize, &'a Pod)> {
    (0..validated.plan.servers)
        .filter_map(|i| {
            pods.get(&labels::pod_name(&validated.name, Role::Server, i))
                .map(|p| (i, p))
        })
        .filter(|(_, p)| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect()
}

async fn patch_status(
    jobs: &Api<ByzSgdJob>,
    name: &str,
    status: &byzsgd_api::job::ByzSgdJobStatus,
) -> Result<(), Error> {
    apply::apply_status(jobs, name, status)
        .await
        .map_err(|source| Error::PatchStatus {
            job: name.to_owned(),
            source,
        })
}

/// `error` and its causes, joined by `: `.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Logs the error, counts it by kind, and retries after a pause.
pub fn error_policy(job: Arc<ByzSgdJob>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), error = error as &dyn std::error::Error, "reconcile failed");
    ctx.metrics.errors.with_label_values(&[error.kind()]).inc();
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until `shutdown` completes. `watch_namespace` limits it to one
/// namespace; `None` watches all.
pub async fn run_controller(
    client: Client,
    watch_namespace: Option<&str>,
    config: ReconcilerConfig,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (jobs, pods, services, config_maps): (
        Api<ByzSgdJob>,
        Api<Pod>,
        Api<Service>,
        Api<ConfigMap>,
    ) = match watch_namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let controller = Controller::new(jobs, watcher::Config::default())
        .owns(pods, owned.clone())
        .owns(services, owned.clone())
        .owns(config_maps, owned);
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics,
        http: reqwest::Client::new(),
        config,
        store: controller.store(),
    });
    let stream = controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context);
    let mut stream = std::pin::pin!(stream);
    while let Some(result) = stream.next().await {
        match result {
            Ok((object, _)) => tracing::debug!(job = %object.name, "reconciled"),
            Err(error) => tracing::debug!(%error, "controller event"),
        }
    }
}

#[cfg(test)]
mod tests;
