//! The `ByzantineChaos` controller: a second reconcile loop beside the job controller, in the
//! same pipeline style (STYLE.md §2.3): observe (the experiment, its job, the job's pods) →
//! [`decide`] (pure) → one effect ([`inject`]: arm or disarm the selected nodes' `/chaos`, or
//! delete them for `crash`) → status patch and Events on the experiment *and* on its job.
//!
//! Which nodes are hit and whether the spec fits the job are the node's own
//! `byzsgd_api::chaos::{select, validate}`, so the operator, the local runner and a test hit
//! the same nodes and reject the same specs with the same messages (issue #7).

pub mod decide;
pub mod inject;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use byzsgd_api::{
    chaos::{ByzantineChaos, ByzantineChaosStatus, ChaosPhase},
    job::ByzSgdJob,
};
use decide::{Decision, Effect, Observed, PodView, Target};
use k8s_openapi::{
    api::core::v1::{Pod, Secret},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::{
        controller::{Action, Controller},
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{self, Event as FinalizerEvent, finalizer},
        reflector::ObjectRef,
        watcher,
    },
};
use tokio_stream::StreamExt;

use crate::{
    controller::{
        ReconcilerConfig,
        apply::apply_status,
        build::labels::{self, FIELD_MANAGER},
        status::Note,
        validate::{self, ValidatedJob},
    },
    metrics::Metrics,
};

/// Why a chaos reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the job, its pods or its token failed.
    #[error("failed to read {what} for ByzantineChaos {chaos}")]
    Read {
        /// The experiment.
        chaos: String,
        /// What was read.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The job's chaos-token Secret does not exist (yet): the job controller creates it.
    #[error(
        "ByzantineChaos {chaos}: the Secret {secret} holding job {job}'s chaos token does not \
         exist yet; the job controller creates it for jobs with spec.chaos.allowed: true"
    )]
    NoToken {
        /// The experiment.
        chaos: String,
        /// The job.
        job: String,
        /// The Secret's name.
        secret: String,
    },
    /// A node did not answer; retried.
    #[error("ByzantineChaos {chaos}: cannot reach a selected node")]
    Inject {
        /// The experiment.
        chaos: String,
        /// What failed.
        #[source]
        source: inject::Error,
    },
    /// Deleting a pod for `crash` failed.
    #[error("ByzantineChaos {chaos}: failed to delete pod {pod}")]
    Crash {
        /// The experiment.
        chaos: String,
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("failed to add or remove the finalizer {FINALIZER} of ByzantineChaos {chaos}")]
    Finalizer {
        /// The experiment.
        chaos: String,
        /// The API error, if the API was reached.
        #[source]
        source: Option<kube::Error>,
    },
    /// Writing the status failed.
    #[error("failed to patch the status of ByzantineChaos {chaos}")]
    PatchStatus {
        /// The experiment.
        chaos: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A bounded label for the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "chaos_read",
            Self::NoToken { .. } => "chaos_no_token",
            Self::Inject { .. } => "chaos_inject",
            Self::Crash { .. } => "chaos_crash",
            Self::PatchStatus { .. } => "chaos_patch_status",
            Self::Finalizer { .. } => "chaos_finalizer",
        }
    }
}

/// What every chaos reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Events on experiments and jobs.
    pub recorder: Recorder,
    /// The operator's metrics (`chaos_active`, errors).
    pub metrics: Metrics,
    /// HTTP client for the nodes' `/chaos`.
    pub http: reqwest::Client,
    /// Settings (URL template, poll interval, timeout).
    pub config: ReconcilerConfig,
}

/// The finalizer that lets a deleted experiment cancel its order on the nodes first.
pub const FINALIZER: &str = "byzsgd.io/chaos-cleanup";

/// Reconciles one experiment through its finalizer: `apply` while it exists, `cleanup`
/// once it is being deleted.
#[tracing::instrument(skip_all, fields(chaos = %chaos.name_any(), namespace = chaos.namespace().unwrap_or_default()))]
pub async fn reconcile(chaos: Arc<ByzantineChaos>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let name = chaos.name_any();
    let api: Api<ByzantineChaos> =
        Api::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, chaos, |event| async {
        match event {
            FinalizerEvent::Apply(chaos) => apply(chaos, &ctx).await,
            FinalizerEvent::Cleanup(chaos) => cleanup(&chaos, &ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => error,
        finalizer::Error::AddFinalizer(source) | finalizer::Error::RemoveFinalizer(source) => {
            Error::Finalizer {
                chaos: name,
                source: Some(source),
            }
        }
        finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => Error::Finalizer {
            chaos: name,
            source: None,
        },
    })
}

/// A deleted experiment that still acts on its pods cancels its order there (best effort: a
/// pod that is gone has nothing left to cancel), so deleting it is a way to stop it.
async fn cleanup(chaos: &ByzantineChaos, ctx: &Context) -> Result<Action, Error> {
    let spec = &chaos.spec.chaos;
    let status = chaos.status.clone().unwrap_or_default();
    // Only a Running order is still in force on the pods (a crash has nothing to undo).
    let acting = decide::cancel(&status, &BTreeMap::new(), spec) != Effect::None;
    let namespace = chaos.namespace().unwrap_or_default();
    ctx.metrics
        .chaos_active
        .remove_label_values(&[namespace.as_str(), &chaos.name_any(), spec.job.as_str()])
        .ok();
    if !acting {
        return Ok(Action::await_change());
    }
    let pods = list_pods(&ctx.client, &namespace, &spec.job)
        .await
        .map_err(|source| Error::Read {
            chaos: chaos.name_any(),
            what: "the job's pods".to_owned(),
            source,
        })?;
    let effect = decide::cancel(&status, &pods, spec);
    let job = Api::<ByzSgdJob>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&spec.job)
        .await
        .ok()
        .flatten();
    let note = Note {
        warning: false,
        reason: "ChaosEnded".to_owned(),
        message: "deleted while running: its order was cancelled on the pods".to_owned(),
    };
    // Never keep the finalizer for a failed cancel: with the job (and its token) gone the
    // object could never be deleted. The failure is reported instead.
    let notes = match carry_out(ctx, chaos, &effect, status, vec![note], Timestamp::now()).await {
        Ok((_, notes)) => notes,
        Err(error) => vec![Note {
            warning: true,
            reason: "ChaosNotCancelled".to_owned(),
            message: crate::controller::error_chain(&error),
        }],
    };
    for note in &notes {
        publish(ctx, chaos, job.as_ref(), note).await;
    }
    Ok(Action::await_change())
}

/// Reconciles one live experiment: observe → decide → effect → status and Events.
async fn apply(chaos: Arc<ByzantineChaos>, ctx: &Context) -> Result<Action, Error> {
    let name = chaos.name_any();
    let namespace = chaos.namespace().unwrap_or_default();
    let spec = &chaos.spec.chaos;
    let read = |what: &str| {
        let (chaos, what) = (name.clone(), what.to_owned());
        move |source| Error::Read {
            chaos,
            what,
            source,
        }
    };

    // Observe.
    let jobs: Api<ByzSgdJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let job = jobs
        .get_opt(&spec.job)
        .await
        .map_err(read(&format!("job {}", spec.job)))?;
    let validated: Option<Result<ValidatedJob, String>> = job.as_ref().map(|job| {
        validate::validate_job(job).map_err(|error| crate::controller::error_chain(&error))
    });
    let pods = match &validated {
        Some(Ok(_)) => list_pods(&ctx.client, &namespace, &spec.job)
            .await
            .map_err(read("the job's pods"))?,
        _ => BTreeMap::new(),
    };
    let target = match (&validated, &job) {
        (Some(Ok(validated)), Some(job)) => Target::Found {
            job: validated,
            status: job.status.as_ref(),
        },
        (Some(Err(why)), _) => Target::Invalid(why),
        _ => Target::Missing,
    };
    let now = Timestamp::now();
    let Decision {
        status,
        effect,
        requeue,
        notes,
    } = decide::decide(&Observed {
        spec,
        generation: chaos.metadata.generation,
        previous: chaos.status.as_ref(),
        target,
        pods: &pods,
        now,
        poll: ctx.config.poll_interval,
    });

    let (status, notes) = carry_out(ctx, &chaos, &effect, status, notes, now).await?;

    // Status, Events, metrics.
    // The gauge first: the effect already happened, and whoever sees the new status must
    // find the gauge agreeing with it.
    let active = i64::from(status.phase == Some(ChaosPhase::Running));
    ctx.metrics
        .chaos_active
        .with_label_values(&[namespace.as_str(), name.as_str(), spec.job.as_str()])
        .set(active);
    patch_status(&ctx.client, &namespace, &name, &status).await?;
    for note in notes {
        publish(ctx, &chaos, job.as_ref(), &note).await;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Carries out the decided effect. A node's refusal turns the status into Failed (retrying
/// the same order cannot help); any other failure is an error, so the reconcile is retried
/// with the previous status left in place.
async fn carry_out(
    ctx: &Context,
    chaos: &ByzantineChaos,
    effect: &Effect,
    mut status: ByzantineChaosStatus,
    mut notes: Vec<Note>,
    now: Timestamp,
) -> Result<(ByzantineChaosStatus, Vec<Note>), Error> {
    let name = chaos.name_any();
    let namespace = chaos.namespace().unwrap_or_default();
    let spec = &chaos.spec.chaos;
    match effect {
        Effect::None => {}
        Effect::Arm { pods, request } => {
            let token = read_token(&ctx.client, &namespace, &name, &spec.job).await?;
            let endpoint = endpoint(&ctx.config, &namespace, spec, &token);
            match endpoint.arm(&ctx.http, pods, request).await {
                Ok(()) => {}
                Err(error @ inject::Error::Refused { .. }) => {
                    let message = error.to_string();
                    status = decide::refused(status, &message, now, chaos.metadata.generation);
                    notes = vec![Note {
                        warning: true,
                        reason: "ChaosRefused".to_owned(),
                        message,
                    }];
                }
                Err(source) => {
                    return Err(Error::Inject {
                        chaos: name,
                        source,
                    });
                }
            }
        }
        Effect::Disarm { pods } => {
            let token = read_token(&ctx.client, &namespace, &name, &spec.job).await?;
            let endpoint = endpoint(&ctx.config, &namespace, spec, &token);
            for error in endpoint.disarm(&ctx.http, pods).await {
                notes.push(Note {
                    warning: true,
                    reason: "ChaosNotCancelled".to_owned(),
                    message: error.to_string(),
                });
            }
        }
        Effect::Crash { pods } => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
            for pod in pods {
                match api.delete(pod, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(source) => {
                        return Err(Error::Crash {
                            chaos: name,
                            pod: pod.clone(),
                            source,
                        });
                    }
                }
            }
        }
    }
    Ok((status, notes))
}

fn endpoint<'a>(
    config: &'a ReconcilerConfig,
    namespace: &'a str,
    spec: &'a byzsgd_api::chaos::ChaosSpec,
    token: &'a str,
) -> inject::Endpoint<'a> {
    inject::Endpoint {
        template: &config.chaos_url_template,
        namespace,
        job: &spec.job,
        role: spec.role,
        token,
        timeout: config.status_timeout,
    }
}

/// The job's pods by name, as the decision sees them.
async fn list_pods(
    client: &Client,
    namespace: &str,
    job: &str,
) -> Result<BTreeMap<String, PodView>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = api
        .list(&ListParams::default().labels(&labels::job_selector(job)))
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|pod| {
            let status = pod.status.as_ref();
            let view = PodView {
                ip: status.and_then(|s| s.pod_ip.clone()),
                running: status.and_then(|s| s.phase.as_deref()) == Some("Running")
                    && pod.metadata.deletion_timestamp.is_none(),
            };
            Some((pod.metadata.name?, view))
        })
        .collect())
}

/// Reads the job's chaos token from its Secret.
async fn read_token(
    client: &Client,
    namespace: &str,
    chaos: &str,
    job: &str,
) -> Result<String, Error> {
    let secret_name = labels::chaos_token_secret_name(job);
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(&secret_name)
        .await
        .map_err(|source| Error::Read {
            chaos: chaos.to_owned(),
            what: format!("Secret {secret_name}"),
            source,
        })?;
    secret
        .and_then(|s| s.data)
        .and_then(|data| data.get(labels::CHAOS_TOKEN_KEY).cloned())
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .ok_or_else(|| Error::NoToken {
            chaos: chaos.to_owned(),
            job: job.to_owned(),
            secret: secret_name,
        })
}

async fn patch_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &ByzantineChaosStatus,
) -> Result<(), Error> {
    let api: Api<ByzantineChaos> = Api::namespaced(client.clone(), namespace);
    apply_status(&api, name, status)
        .await
        .map_err(|source| Error::PatchStatus {
            chaos: name.to_owned(),
            source,
        })
}

/// Publishes `note` on the experiment and, if it exists, on its job (where `kubectl describe`
/// of the job shows what was done to it).
async fn publish(ctx: &Context, chaos: &ByzantineChaos, job: Option<&ByzSgdJob>, note: &Note) {
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.clone(),
        note: Some(format!(
            "ByzantineChaos {}: {}",
            chaos.name_any(),
            note.message
        )),
        action: "Chaos".to_owned(),
        secondary: None,
    };
    let mut references = vec![chaos.object_ref(&())];
    if let Some(job) = job {
        references.push(job.object_ref(&()));
    }
    for reference in references {
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason = %note.reason, "cannot publish event");
        }
    }
}

/// Logs the error, counts it by kind, and retries after a pause.
pub fn error_policy(chaos: Arc<ByzantineChaos>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(chaos = %chaos.name_any(), error = error as &dyn std::error::Error, "chaos reconcile failed");
    ctx.metrics.errors.with_label_values(&[error.kind()]).inc();
    Action::requeue(Duration::from_secs(2).min(ctx.config.poll_interval * 4))
}

/// Runs the chaos controller until `shutdown` completes. `watch_namespace` limits it to one
/// namespace; `None` watches all. A job's change wakes the experiments that name it, so an
/// experiment reacts to the job's step and state without waiting for its next poll.
pub async fn run_controller(
    client: Client,
    watch_namespace: Option<&str>,
    config: ReconcilerConfig,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (chaos, jobs): (Api<ByzantineChaos>, Api<ByzSgdJob>) = match watch_namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let controller = Controller::new(chaos, watcher::Config::default());
    let store = controller.store();
    let controller = controller.watches(jobs, watcher::Config::default(), move |job| {
        let (name, namespace) = (job.name_any(), job.namespace());
        store
            .state()
            .into_iter()
            .filter(|chaos| chaos.spec.chaos.job == name && chaos.namespace() == namespace)
            .map(|chaos| ObjectRef::from_obj(&*chaos))
            .collect::<Vec<_>>()
    });
    let reporter = Reporter {
        controller: format!("{FIELD_MANAGER}-chaos"),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics,
        http: reqwest::Client::new(),
        config,
    });
    let stream = controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context);
    let mut stream = std::pin::pin!(stream);
    while let Some(result) = stream.next().await {
        match result {
            Ok((object, _)) => tracing::debug!(chaos = %object.name, "reconciled"),
            Err(error) => tracing::debug!(%error, "chaos controller event"),
        }
    }
}

#[cfg(test)]
mod tests;
