//! Where runs execute. Every backend takes a [`Prepared`] run — its manifest already validated
//! by the node's parser into a [`Plan`], its chaos files checked against that plan — and returns
//! tidy rows plus a summary. Preparation is shared so that a sweep refuses a broken grid point
//! before the first run starts, whatever the backend.

pub mod kube;
pub mod local;
pub mod scrape;
pub mod sim;

use std::path::Path;

use anyhow::Context;
use byzsgd_api::{
    Manifest,
    chaos::{self, ChaosResource},
    validate,
};
use byzsgd_core::job::Plan;

use crate::{
    grid::Run,
    results::{SummaryRow, TidyRow},
};

/// A run ready to execute.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The grid point.
    pub run: Run,
    /// The manifest as YAML, exactly what a backend hands to the node or the cluster.
    pub manifest_yaml: String,
    /// The validated plan.
    pub plan: Plan,
    /// The scenario's chaos, each rewritten to target this run's job.
    pub chaos: Vec<ChaosResource>,
}

/// What a backend measured.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Tidy rows, `run` already set.
    pub rows: Vec<TidyRow>,
    /// Summary metrics (labels are filled by the sweep).
    pub summary: SummaryRow,
}

/// Validates one grid point: its manifest through the node's manifest parser and plan
/// validation, and each chaos file against the plan.
pub fn prepare(run: &Run, chaos_files: &[ChaosResource], origin: &str) -> anyhow::Result<Prepared> {
    let manifest_yaml = serde_yaml_ng::to_string(&run.manifest)
        .with_context(|| format!("{origin}: the manifest cannot be written as YAML"))?;
    let manifest = Manifest::parse(&manifest_yaml, origin)?;
    let plan = validate(&manifest.spec).with_context(|| format!("{origin}: invalid job"))?;
    let mut chaos = Vec::with_capacity(chaos_files.len());
    for resource in chaos_files {
        let mut resource = resource.clone();
        resource.spec.job.clone_from(&run.job_name);
        chaos::validate(&resource.spec, &run.job_name, &plan)
            .with_context(|| format!("{origin}: chaos `{}`", resource.name))?;
        chaos.push(resource);
    }
    Ok(Prepared {
        run: run.clone(),
        manifest_yaml,
        plan,
        chaos,
    })
}

/// Writes a chaos resource as the YAML file a runner or `kubectl` takes.
pub fn chaos_yaml(resource: &ChaosResource) -> anyhow::Result<String> {
    let document = serde_json::json!({
        "apiVersion": "byzsgd.io/v1alpha1",
        "kind": chaos::KIND,
        "metadata": {"name": resource.name},
        "spec": resource.spec,
    });
    Ok(serde_yaml_ng::to_string(&document)?)
}

/// Creates `dir` and its parents, naming it on failure.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
