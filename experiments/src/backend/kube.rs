//! The `kube` backend: each run becomes a `ByzSGDJob` in the current cluster (kubeconfig or
//! in-cluster config), applied by server-side apply, plus the scenario's `ByzantineChaos`
//! resources; it then polls the job's status — the operator's quorum view of training — until
//! the job reaches a terminal state or the timeout passes, and deletes what it applied unless
//! told to keep it. The tidy rows are the status samples (node `job`): per-server series and
//! true drift need the local runner or the cluster's Prometheus.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use byzsgd_api::job::{ByzSgdJob, ByzSgdJobStatus, JobState};
use kube::{
    api::{Api, DeleteParams, DynamicObject, Patch, PatchParams},
    core::GroupVersionKind,
    discovery::pinned_kind,
};

use super::{Output, Prepared};
use crate::results::{TidyRow, metric};

/// Field manager of everything the backend applies.
const MANAGER: &str = "byzsgd-exp";

/// How the kube backend runs.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Namespace (default: the kubeconfig's).
    pub namespace: Option<String>,
    /// Longest wait for one job.
    pub timeout: Duration,
    /// How often the status is read.
    pub poll: Duration,
    /// Keep jobs and chaos after the run.
    pub keep: bool,
}

/// Runs one prepared run on the cluster.
pub fn run(prepared: &Prepared, options: &KubeOptions) -> anyhow::Result<Output> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run_async(prepared, options))
}

async fn run_async(prepared: &Prepared, options: &KubeOptions) -> anyhow::Result<Output> {
    let client = kube::Client::try_default().await.context(
        "cannot reach a Kubernetes cluster: set KUBECONFIG (or run in a pod), or use \
         --backend local",
    )?;
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let name = &prepared.run.job_name;
    let manifest: serde_json::Value = serde_yaml_ng::from_str(&prepared.manifest_yaml)?;
    let job: ByzSgdJob = serde_json::from_value(manifest)
        .context("the run's manifest is not a ByzSGDJob the operator's types accept")?;
    let jobs: Api<ByzSgdJob> = Api::namespaced(client.clone(), &namespace);
    let apply = PatchParams::apply(MANAGER).force();
    jobs.patch(name, &apply, &Patch::Apply(&job))
        .await
        .with_context(|| {
            format!(
                "cannot apply ByzSGDJob {namespace}/{name}: is the CRD installed (`kubectl \
                 apply -f crds/`) and the operator running?"
            )
        })?;
    let (chaos_api, chaos_names) = apply_chaos(&client, &namespace, prepared, &apply).await?;
    let outcome = watch(&jobs, prepared, options).await;
    if !options.keep {
        let _ = jobs.delete(name, &DeleteParams::background()).await;
        if let Some(api) = &chaos_api {
            for chaos_name in &chaos_names {
                let _ = api.delete(chaos_name, &DeleteParams::background()).await;
            }
        }
    }
    let (state, status, elapsed, rows) = outcome?;
    let mut output = Output {
        rows,
        ..Output::default()
    };
    let training = status.training.unwrap_or_default();
    let summary = &mut output.summary;
    summary.set("final_accuracy", training.accuracy);
    summary.set("steps", Some(training.step as f64));
    summary.set("wall_s", Some(elapsed));
    summary.set(
        "converged",
        Some(f64::from(u8::from(state == JobState::Succeeded))),
    );
    Ok(output)
}

/// Applies the run's chaos resources; returns their API (if any) and names.
async fn apply_chaos(
    client: &kube::Client,
    namespace: &str,
    prepared: &Prepared,
    apply: &PatchParams,
) -> anyhow::Result<(Option<Api<DynamicObject>>, Vec<String>)> {
    let name = &prepared.run.job_name;
    let mut chaos_names = Vec::new();
    let chaos_api = if prepared.chaos.is_empty() {
        None
    } else {
        let gvk = GroupVersionKind::gvk("byzsgd.io", "v1alpha1", byzsgd_api::chaos::KIND);
        let (resource, _) = pinned_kind(client, &gvk).await.context(
            "the cluster has no ByzantineChaos resource: install the CRDs (`kubectl apply -f crds/`)",
        )?;
        Some(Api::<DynamicObject>::namespaced_with(
            client.clone(),
            namespace,
            &resource,
        ))
    };
    if let Some(api) = &chaos_api {
        for resource in &prepared.chaos {
            let chaos_name = format!("{name}-{}", resource.name);
            let object = serde_json::json!({
                "apiVersion": "byzsgd.io/v1alpha1",
                "kind": byzsgd_api::chaos::KIND,
                "metadata": {"name": chaos_name},
                "spec": resource.spec,
            });
            api.patch(&chaos_name, apply, &Patch::Apply(&object))
                .await
                .with_context(|| format!("cannot apply ByzantineChaos {namespace}/{chaos_name}"))?;
            chaos_names.push(chaos_name);
        }
    }
    Ok((chaos_api, chaos_names))
}

/// Polls the job until it is terminal or the timeout passes, sampling its training status.
async fn watch(
    jobs: &Api<ByzSgdJob>,
    prepared: &Prepared,
    options: &KubeOptions,
) -> anyhow::Result<(JobState, ByzSgdJobStatus, f64, Vec<TidyRow>)> {
    let name = &prepared.run.job_name;
    let namespace = jobs.namespace().unwrap_or("default").to_owned();
    let started = Instant::now();
    let mut rows = Vec::new();
    loop {
        let current = jobs
            .get(name)
            .await
            .with_context(|| format!("cannot read ByzSGDJob {namespace}/{name}"))?;
        let status = current.status.unwrap_or_default();
        let elapsed = started.elapsed().as_secs_f64();
        if let Some(training) = &status.training {
            let mut push = |name: &str, value: f64| {
                rows.push(TidyRow::new(
                    &prepared.run.id,
                    training.step,
                    "job",
                    "job",
                    name,
                    value,
                ));
            };
            push(metric::TIME, elapsed);
            if let Some(accuracy) = training.accuracy {
                push(metric::ACCURACY, accuracy);
            }
            if let Some(loss) = training.loss {
                push(metric::LOSS, loss);
            }
            if let Some(drift) = training.max_drift {
                push(metric::DRIFT_TO_MEDIAN, drift);
            }
        }
        if let Some(state) = status.state.filter(|s| s.is_terminal()) {
            return Ok((state, status, elapsed, rows));
        }
        if started.elapsed() >= options.timeout {
            bail!(
                "ByzSGDJob {namespace}/{name} is still {} after {:.0} s (--timeout); \
                 `kubectl describe byzsgdjob {name} -n {namespace}` shows why",
                status
                    .state
                    .map_or_else(|| "without a status".to_owned(), |s| format!("{s:?}")),
                options.timeout.as_secs_f64()
            );
        }
        tokio::time::sleep(options.poll).await;
    }
}
