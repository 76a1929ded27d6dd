//! The training part of a `ByzSGDJob`: the one spec that `byzsgd-node local FILE` and the
//! Kubernetes operator both read (DESIGN.md §4, "one manifest, two runtimes").
//!
//! Field names follow Kubeflow where the meaning is the same (`replicas`, `runPolicy`, …; see
//! ANCHORS.md). Pod-level fields (`runPolicy`, `template`) are not part of this type: the local
//! runner ignores them and the operator adds them around it. Every field carries a `///`
//! because these comments become the CRD's OpenAPI descriptions (`kubectl explain`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{
    attack::AttackParams,
    data::Partition,
    gar::{PreAggregator, Rule},
    model::ModelSpec,
};

/// What to train, on which data, with how many servers and workers, and who misbehaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// The model to train, e.g. `{kind: mlp, hidden: [100]}` (the paper's MNIST model).
    pub model: ModelSpec,
    /// The data set and how it is split across workers.
    #[serde(default)]
    pub dataset: DatasetSpec,
    /// Optimisation hyper-parameters.
    pub training: TrainingSpec,
    /// `asynchronous` (the paper's main algorithm) or `synchronous` (filters, fewer messages).
    #[serde(default)]
    pub mode: Mode,
    /// Parameter servers: how many, how many may be Byzantine, and the gather period T.
    pub servers: ServerSpec,
    /// Workers: how many and how many may be Byzantine.
    pub workers: WorkerSpec,
    /// Which rule aggregates gradients (on servers) and models (on workers and at gathers).
    #[serde(default)]
    pub aggregation: AggregationSpec,
    /// Which nodes really misbehave and how; may differ from the declared `byzantine` counts.
    #[serde(default)]
    pub inject: Vec<Injection>,
    /// When the job counts as converged.
    #[serde(default)]
    pub convergence: Option<ConvergenceSpec>,
    /// Whether chaos experiments (`ByzantineChaos`) may switch this job's nodes to Byzantine
    /// behaviour while they run. Off by default: the nodes of a job that does not allow chaos
    /// refuse every chaos call, so a production job cannot be attacked through its admin port.
    #[serde(default, skip_serializing_if = "ChaosPolicy::is_default")]
    pub chaos: ChaosPolicy,
}

/// What chaos experiments may do to a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChaosPolicy {
    /// Let `ByzantineChaos` switch attacks on and off in this job's nodes at run time (the
    /// nodes then also need a chaos token). Default false.
    #[serde(default)]
    pub allowed: bool,
}

impl ChaosPolicy {
    /// Whether this is the default policy (chaos not allowed), which manifests leave out.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The data set a job trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetSpec {
    /// `fashion-mnist` (default), `mnist` (same IDX format) or `synthetic` (seeded, no files).
    #[serde(default)]
    pub name: DatasetName,
    /// Directory holding the IDX files; defaults to the Debian package's directory for
    /// `fashion-mnist` (`/usr/share/datasets/fashion-mnist`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// How training samples are split across workers: `{kind: iid}` (default) or
    /// `{kind: dirichlet, alpha: 0.5}`.
    #[serde(default)]
    pub partition: Partition,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        Self {
            name: DatasetName::default(),
            path: None,
            partition: Partition::Iid,
        }
    }
}

/// Named data sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// Fashion-MNIST (Xiao et al. 2017), IDX files from the Debian package `dataset-fashion-mnist`.
    #[default]
    FashionMnist,
    /// MNIST, IDX files in the same format (give `path`).
    Mnist,
    /// A seeded synthetic 28×28, 10-class data set; needs no files (tests, smoke runs).
    Synthetic,
}

/// Optimisation hyper-parameters, shared by every correct node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainingSpec {
    /// Number of learning steps (the paper's t runs from 0 to steps − 1).
    pub steps: u64,
    /// Mini-batch size per worker and step.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Learning rate η. Also sets the gather period T = ⌊1/(3·l·η)⌋ when `gatherEvery: auto`.
    pub learning_rate: f32,
    /// Momentum μ applied by each server to the aggregated gradient (0 = plain SGD, as in the paper).
    #[serde(default)]
    pub momentum: f32,
    /// L2 weight decay added to the aggregated gradient.
    #[serde(default)]
    pub weight_decay: f32,
    /// Seed of the shared initial model, the data partition and every sampler.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Evaluate test accuracy on the servers every this many steps.
    #[serde(default = "default_evaluate_every")]
    pub evaluate_every: u64,
    /// Lipschitz constant l of the gradient, used by T = ⌊1/(3·l·η)⌋ (PAPER.md §3.5: 1 when unknown).
    #[serde(default = "default_lipschitz")]
    pub lipschitz: f32,
    /// Servers write a checkpoint every this many steps, and at the end, when they have a
    /// checkpoint directory (the operator's volume, the local runner's run directory); a
    /// server that starts with one of its own resumes from the newest. 0 writes none.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
}

fn default_batch_size() -> usize {
    32
}
fn default_seed() -> u64 {
    1
}
fn default_evaluate_every() -> u64 {
    100
}
fn default_lipschitz() -> f32 {
    1.0
}
fn default_checkpoint_every() -> u64 {
    100
}

/// Network assumption the job runs under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No bound on delays: quorums of the first n − f senders, scatter/gather with DMC.
    #[default]
    Asynchronous,
    /// Bounded delays: a worker pulls one server's model per step and checks it with the
    /// Lipschitz and outliers filters; servers wait for all gradients up to a timeout.
    Synchronous,
}

/// Parameter servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    /// n_ps, the number of parameter servers.
    pub replicas: usize,
    /// f_ps, how many servers may be Byzantine; needs n_ps ≥ 3·f_ps + 2 when f_ps > 0.
    #[serde(default)]
    pub byzantine: usize,
    /// Gather period T in steps, or `auto` for T = ⌊1/(3·l·η)⌋ (at least 1).
    #[serde(default)]
    pub gather_every: GatherEvery,
}

/// Workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerSpec {
    /// n_w, the number of workers.
    pub replicas: usize,
    /// f_w, how many workers may be Byzantine; needs n_w ≥ 3·f_w + 1.
    #[serde(default)]
    pub byzantine: usize,
}

/// The gather period T: a number of steps, or `auto`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GatherEvery {
    /// T = ⌊1/(3·l·η)⌋, at least 1 (PAPER.md §3.5).
    #[default]
    Auto,
    /// A fixed T.
    Steps(u64),
}

impl Serialize for GatherEvery {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::Steps(steps) => serializer.serialize_u64(*steps),
        }
    }
}

impl<'de> Deserialize<'de> for GatherEvery {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Steps(u64),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Steps(0) => Err(serde::de::Error::custom(
                "gatherEvery must be at least 1 (or `auto`)",
            )),
            Raw::Steps(steps) => Ok(Self::Steps(steps)),
            Raw::Word(word) if word == "auto" => Ok(Self::Auto),
            Raw::Word(word) => Err(serde::de::Error::custom(format!(
                "gatherEvery must be a positive number of steps or `auto`, not `{word}`"
            ))),
        }
    }
}

/// Kubernetes' int-or-string: a positive number of steps or the word `auto`. Written by hand
/// because the derived schema (an untagged union) is not structural.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for GatherEvery {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GatherEvery".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "Gather period T in steps (≥ 1), or `auto` for T = ⌊1/(3·l·η)⌋.",
        })
    }
}

/// Which rule aggregates what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AggregationSpec {
    /// Rule the servers apply to the q_w = n_w − f_w gradients of a step (paper: `mda`).
    #[serde(default = "default_gradient_rule")]
    pub gradients: Rule,
    /// Rule applied to the q_ps = n_ps − f_ps models, on workers every step and on servers at
    /// every gather (paper: `median`, i.e. DMC).
    #[serde(default = "default_model_rule")]
    pub models: Rule,
    /// Pre-aggregators applied, in order, before the gradient rule (e.g. `[nnm]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_aggregators: Vec<PreAggregator>,
}

fn default_gradient_rule() -> Rule {
    Rule::Mda
}
fn default_model_rule() -> Rule {
    Rule::Median
}

impl Default for AggregationSpec {
    fn default() -> Self {
        Self {
            gradients: default_gradient_rule(),
            models: default_model_rule(),
            pre_aggregators: Vec::new(),
        }
    }
}

/// The two roles of ByzSGD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A parameter server.
    Server,
    /// A worker.
    Worker,
}

impl Role {
    /// Lower-case name, as used in pod names, metrics labels and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Make some nodes of a role Byzantine with a named attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Injection {
    /// `server` or `worker`.
    pub role: Role,
    /// How many nodes of that role run the attack. Without `indices`, the highest indices are
    /// chosen (e.g. `count: 2` of 7 workers hits worker-5 and worker-6), so the choice is
    /// reproducible.
    #[serde(default = "default_count")]
    pub count: usize,
    /// Exactly which indices run the attack (overrides the default choice; length must equal
    /// `count` when both are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<usize>>,
    /// The attack's name: for workers `random`, `reverse`, `partial-drop`, `sign-flip`,
    /// `gaussian`, `alie`, `foe`, `mimic`, `nan`, `inf`, `neg-inf`, `label-flip`, `min-max`,
    /// `min-sum`, `optimal-ipm`, `optimal-alie`; for servers `random`, `reverse`,
    /// `partial-drop`, `stale`, `equivocate`, `silence`, `alie`, `silence-half`, `dissensus`.
    pub attack: String,
    /// Attack parameters (all optional; each attack documents its defaults).
    #[serde(default)]
    pub params: AttackParams,
}

fn default_count() -> usize {
    1
}

/// When a job counts as converged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConvergenceSpec {
    /// Test accuracy (0–1) the median over a quorum of correct servers must reach.
    pub target_accuracy: f32,
    /// ... within this many steps (default: `training.steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_steps: Option<u64>,
    /// Largest drift a chaos experiment may leave for its verdict to Pass: the job's
    /// `status.training.maxDrift` (median over a quorum of each server's distance to the model
    /// it adopted at its last gather) must end at or below it. Unset: the drift is reported,
    /// not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drift: Option<f32>,
}
