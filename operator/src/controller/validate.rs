//! Step 1 of the pipeline, pure: checks a `ByzSGDJob` with the node's own `validate` (the same
//! checks `byzsgd-node local` runs) and resolves everything later steps need into a
//! [`ValidatedJob`]. After this step nothing reads `job.spec` again, except for the owner
//! reference (the zookeeper-operator "validate" step, STYLE.md A2).

use byzsgd_api::{
    InvalidSpec, Manifest, ManifestError,
    job::{ByzSgdJob, DataSource, PodTemplate, RunPolicy},
    validate,
};
use byzsgd_core::job::{Behaviour, Plan, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// Why a job cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace (the CRD is namespaced, so only a hand-made object lacks one).
    #[error("job {name} has no namespace; ByzSGDJob is a namespaced resource")]
    MissingNamespace {
        /// The job's name.
        name: String,
    },
    /// The object has no uid yet, so children cannot point at it.
    #[error("job {name} has no uid; only objects read from the API server can be reconciled")]
    MissingUid {
        /// The job's name.
        name: String,
    },
    /// The spec breaks a bound or names something unknown.
    #[error("job {name} is invalid")]
    InvalidSpec {
        /// The job's name.
        name: String,
        /// Every problem, each with its field and fix.
        #[source]
        source: InvalidSpec,
    },
    /// The manifest the pods would read does not parse back (e.g. a name too long for pods).
    #[error("job {name}: the manifest handed to the pods does not parse")]
    Manifest {
        /// The job's name.
        name: String,
        /// What the node's parser said.
        #[source]
        source: ManifestError,
    },
    /// Serialising the manifest failed.
    #[error("job {name}: cannot serialise the manifest")]
    Serialise {
        /// The job's name.
        name: String,
        /// The serialiser's error.
        #[source]
        source: serde_yaml_ng::Error,
    },
}

/// A job that passed validation, with everything later steps need.
#[derive(Debug, Clone)]
pub struct ValidatedJob {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Controller owner reference for every child.
    pub owner: OwnerReference,
    /// The node's resolved plan: counts, quorums, who runs which attack.
    pub plan: Plan,
    /// The manifest text pods read with `--job-file` (apiVersion, kind, name, spec).
    pub manifest: String,
    /// Pod-level settings.
    pub template: PodTemplate,
    /// Where the pods read the data set, resolved (`None`: the data set needs no files).
    pub data: Option<DataSource>,
    /// Deadline, retries, clean-up, suspension.
    pub run_policy: RunPolicy,
}

impl ValidatedJob {
    /// The attack of one node, if it is Byzantine.
    pub fn attack(&self, role: Role, index: usize) -> Option<String> {
        match self.plan.behaviour(role, index) {
            Behaviour::Honest => None,
            Behaviour::Server(attack) => Some(attack.kind.to_string()),
            Behaviour::Worker(attack) => Some(attack.kind.to_string()),
        }
    }

    /// Number of pods of a role.
    pub fn replicas(&self, role: Role) -> usize {
        match role {
            Role::Server => self.plan.servers,
            Role::Worker => self.plan.workers,
        }
    }

    /// Declared Byzantine count of a role.
    pub fn byzantine(&self, role: Role) -> usize {
        match role {
            Role::Server => self.plan.byzantine_servers,
            Role::Worker => self.plan.byzantine_workers,
        }
    }

    /// How many nodes of a role really run an attack.
    pub fn injected(&self, role: Role) -> usize {
        (0..self.replicas(role))
            .filter(|&index| self.attack(role, index).is_some())
            .count()
    }
}

/// Validates `job`.
pub fn validate_job(job: &ByzSgdJob) -> Result<ValidatedJob, Error> {
    let name = job.name_any();
    let namespace = job
        .namespace()
        .ok_or_else(|| Error::MissingNamespace { name: name.clone() })?;
    let owner = job
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingUid { name: name.clone() })?;
    // Every problem at once: the training spec's (the node's own checks) and the template's.
    let template_problems = job.spec.template.problems(&job.spec.job.dataset);
    let plan = match validate(&job.spec.job) {
        Ok(plan) if template_problems.is_empty() => plan,
        Ok(_) => {
            return Err(Error::InvalidSpec {
                name,
                source: InvalidSpec {
                    problems: template_problems,
                },
            });
        }
        Err(mut invalid) => {
            invalid.problems.extend(template_problems);
            return Err(Error::InvalidSpec {
                name,
                source: invalid,
            });
        }
    };
    // Checked just above (`problems` includes it), so this never falls back.
    let data = job
        .spec
        .template
        .resolved_data_source(&plan.spec.dataset)
        .unwrap_or_default();
    let manifest = render_manifest(&name, job).map_err(|source| Error::Serialise {
        name: name.clone(),
        source,
    })?;
    // The pods parse this very text; parsing it here turns a pod crash loop into a status.
    Manifest::parse(&manifest, "the ConfigMap").map_err(|source| Error::Manifest {
        name: name.clone(),
        source,
    })?;
    Ok(ValidatedJob {
        name,
        namespace,
        generation: job.metadata.generation,
        owner,
        plan,
        manifest,
        template: job.spec.template.clone(),
        data,
        run_policy: job.spec.run_policy.clone(),
    })
}

/// The manifest handed to the pods: the training part only, since pods need nothing else.
fn render_manifest(name: &str, job: &ByzSgdJob) -> Result<String, serde_yaml_ng::Error> {
    let manifest = serde_json::json!({
        "apiVersion": byzsgd_api::manifest::API_VERSION,
        "kind": byzsgd_api::manifest::KIND,
        "metadata": {"name": name},
        "spec": job.spec.job,
    });
    serde_yaml_ng::to_string(&manifest)
}
