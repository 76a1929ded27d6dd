//! Builds runnable protocol nodes from a validated [`Plan`]: loads the data, partitions it,
//! builds the model, gives every correct server the same seeded initial model and wraps the
//! injected nodes in their attacks. The sim, the local runner and the pods all start here, so
//! a job behaves the same in every runtime.

use std::{path::PathBuf, sync::Arc};

use ndarray::{ArrayView1, ArrayViewMut1};

use crate::{
    attack::{WorkerAttackKind, flip_labels},
    data::{self, Batches, DEFAULT_DATA_DIR, DataError, Dataset, Samples},
    job::{Behaviour, Plan, Role, spec::DatasetName},
    model::{Model, ModelError},
    protocol::{
        Evaluator, GradientSource, Node, ProtocolConfig,
        byzantine::{Byzantine, Lie, NamedLie, ServerLie, WorkerLie},
        chaos::{Armable, ChaosHandle, ChaosLie, LieContext},
        checkpoint::{Checkpoint, CheckpointError},
        server::Server,
        worker::Worker,
    },
};

/// Samples in the synthetic data set's training part (its test part has a sixth of that).
const SYNTHETIC_TRAIN: usize = 6000;

/// Why nodes could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// The data set could not be loaded.
    #[error("cannot load data set `{name}` from {dir}")]
    Data {
        /// Data set name.
        name: &'static str,
        /// Directory tried.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: DataError,
    },
    /// The data could not be split or sampled.
    #[error("cannot prepare the training data")]
    Shard(#[source] DataError),
    /// The model does not fit the data.
    #[error("cannot build the model for this data set")]
    Model(#[source] ModelError),
    /// The checkpoint to resume from does not fit the job.
    #[error("cannot resume from the checkpoint")]
    Checkpoint(#[source] CheckpointError),
}

/// A job's data: the training set, its partition across workers, and the test set.
#[derive(Debug, Clone)]
pub struct JobData {
    /// Training samples.
    pub train: Arc<Dataset>,
    /// Held-out samples the servers evaluate on.
    pub test: Arc<Dataset>,
    /// Training sample indices of each worker.
    pub shards: Vec<Vec<usize>>,
}

/// Which nodes a [`JobData`] must be able to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataNeeds {
    /// Any node (the simulator, the local runner's up-front check).
    Everything,
    /// Servers only: the test set; no training images.
    Server,
    /// Worker `index` only: its own shard; no test images.
    Worker(usize),
}

impl JobData {
    /// Loads and partitions the data a plan names, for any node.
    pub fn load(plan: &Plan) -> Result<Self, AssembleError> {
        Self::load_for(plan, DataNeeds::Everything)
    }

    /// Loads what the nodes in `needs` use. A node process loads for itself only: a server
    /// keeps the test set, a worker its shard, instead of twelve processes of a local job each
    /// holding the whole data set as floats (≈ 290 MB each). The partition is computed from
    /// every training label either way, so shards are the same as with [`Self::load`]; a
    /// worker's own shard is renumbered `0..len` and the other shards are left empty.
    pub fn load_for(plan: &Plan, needs: DataNeeds) -> Result<Self, AssembleError> {
        let spec = &plan.spec.dataset;
        let seed = plan.spec.training.seed;
        spec.partition.validate().map_err(AssembleError::Shard)?;
        let (train, test, shards) = match spec.name {
            DatasetName::Synthetic => {
                // One prototype set for both parts: generate once and split. Cheap, so every
                // need gets all of it.
                let all = data::synthetic(SYNTHETIC_TRAIN + SYNTHETIC_TRAIN / 6, 28, 28, 10, seed);
                let train_indices: Vec<usize> = (0..SYNTHETIC_TRAIN).collect();
                let test_indices: Vec<usize> = (SYNTHETIC_TRAIN..all.len()).collect();
                let train = all.subset(&train_indices).map_err(AssembleError::Shard)?;
                let shards = spec.partition.assign(&train.labels, plan.workers, seed);
                let test = all.subset(&test_indices).map_err(AssembleError::Shard)?;
                (train, test, shards)
            }
            DatasetName::FashionMnist | DatasetName::Mnist => {
                let dir = data_dir(plan);
                let error = |source| AssembleError::Data {
                    name: dataset_label(spec.name),
                    dir: dir.clone(),
                    source,
                };
                let labels = data::load_train_labels(&dir).map_err(error)?;
                let mut shards = spec.partition.assign(&labels, plan.workers, seed);
                let nothing: &[usize] = &[];
                let (train, test) = match needs {
                    DataNeeds::Everything => (Samples::All, Samples::All),
                    DataNeeds::Server => (Samples::Only(nothing), Samples::All),
                    DataNeeds::Worker(index) => (
                        Samples::Only(shards.get(index).map_or(nothing, Vec::as_slice)),
                        Samples::Only(nothing),
                    ),
                };
                let split = data::load_dir_samples(&dir, train, test).map_err(error)?;
                match needs {
                    DataNeeds::Everything => {}
                    DataNeeds::Server => shards.iter_mut().for_each(Vec::clear),
                    DataNeeds::Worker(index) => {
                        for (other, shard) in shards.iter_mut().enumerate() {
                            *shard = if other == index {
                                (0..shard.len()).collect()
                            } else {
                                Vec::new()
                            };
                        }
                    }
                }
                (split.train, split.test, shards)
            }
        };
        Ok(Self {
            train: Arc::new(train),
            test: Arc::new(test),
            shards,
        })
    }
}

/// The directory a plan's data set is read from.
pub fn data_dir(plan: &Plan) -> PathBuf {
    plan.spec
        .dataset
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

fn dataset_label(name: DatasetName) -> &'static str {
    match name {
        DatasetName::FashionMnist => "fashion-mnist",
        DatasetName::Mnist => "mnist",
        DatasetName::Synthetic => "synthetic",
    }
}

/// A worker's gradients: its model on mini-batches of its own shard.
#[derive(Debug)]
pub struct ShardGradients {
    model: Arc<dyn Model>,
    batches: Batches,
    /// `Some(classes)` when the worker runs the label-flipping attack.
    flip: Option<u8>,
    labels: Vec<u8>,
}

impl GradientSource for ShardGradients {
    fn gradient(&mut self, params: ArrayView1<'_, f32>, gradient: ArrayViewMut1<'_, f32>) -> f32 {
        let (x, labels) = self.batches.next_batch();
        match self.flip {
            None => self.model.loss_and_gradient(params, x, labels, gradient),
            Some(classes) => {
                self.labels.clear();
                self.labels.extend_from_slice(labels);
                flip_labels(&mut self.labels, classes);
                self.model
                    .loss_and_gradient(params, x, &self.labels, gradient)
            }
        }
    }
}

/// A server's evaluator: the model on the whole test set.
#[derive(Debug)]
pub struct TestSetEvaluator {
    model: Arc<dyn Model>,
    test: Arc<Dataset>,
}

impl Evaluator for TestSetEvaluator {
    fn evaluate(&mut self, params: ArrayView1<'_, f32>) -> (f32, f32) {
        self.model
            .evaluate(params, self.test.images.view(), &self.test.labels)
    }
}

/// Everything needed to build any node of one job.
#[derive(Debug, Clone)]
pub struct Assembly {
    plan: Arc<Plan>,
    data: JobData,
    model: Arc<dyn Model>,
    config: Arc<ProtocolConfig>,
}

impl Assembly {
    /// Prepares a job: builds the model for the data's shape.
    pub fn new(plan: Plan, data: JobData) -> Result<Self, AssembleError> {
        let model: Arc<dyn Model> = Arc::from(
            plan.spec
                .model
                .build(data.train.input_shape(), data.train.classes)
                .map_err(AssembleError::Model)?,
        );
        let config = Arc::new(ProtocolConfig::from_plan(&plan, model.num_params()));
        Ok(Self {
            plan: Arc::new(plan),
            data,
            model,
            config,
        })
    }

    /// The protocol settings every node shares.
    pub fn config(&self) -> &Arc<ProtocolConfig> {
        &self.config
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The model description.
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }

    /// Builds node `index` of `role`, honest or Byzantine as the plan says.
    pub fn node(&self, role: Role, index: usize) -> Result<Box<dyn Node>, AssembleError> {
        Ok(self.node_with_chaos(role, index)?.0)
    }

    /// Builds node `index` of `role` like [`Self::node`]; when the job allows chaos
    /// (`spec.chaos.allowed`), the node is wrapped so that attacks can be switched on at run
    /// time, and the handle that arms them is returned too.
    pub fn node_with_chaos(
        &self,
        role: Role,
        index: usize,
    ) -> Result<(Box<dyn Node>, Option<ChaosHandle>), AssembleError> {
        self.node_resuming(role, index, None)
    }

    /// Builds node `index` of `role` like [`Self::node_with_chaos`]; a server given a
    /// checkpoint resumes from it ([`Server::resume`]) instead of starting from the initial
    /// model. Workers hold no state to resume and ignore it.
    pub fn node_resuming(
        &self,
        role: Role,
        index: usize,
        resume: Option<&Checkpoint>,
    ) -> Result<(Box<dyn Node>, Option<ChaosHandle>), AssembleError> {
        let plan = &self.plan;
        let seed = plan.spec.training.seed;
        let chaos = plan.spec.chaos.allowed.then(ChaosHandle::new);
        match role {
            Role::Server => {
                // Same seed on every server: all correct servers start from one model
                // (PAPER.md §3.1), with no "copy server 0's model" step to trust.
                let initial = self.model.init(seed);
                let evaluator = TestSetEvaluator {
                    model: self.model.clone(),
                    test: self.data.test.clone(),
                };
                let mut server = Server::new(
                    self.config.clone(),
                    index,
                    initial,
                    Some(Box::new(evaluator)),
                );
                if let Some(checkpoint) = resume {
                    server
                        .resume(checkpoint)
                        .map_err(AssembleError::Checkpoint)?;
                }
                let context = LieContext {
                    replicas: plan.servers,
                    byzantine: plan.byzantine_servers,
                    seed: seed ^ (index as u64).wrapping_mul(0x9E37_79B9),
                };
                let base = match plan.behaviour(role, index) {
                    Behaviour::Server(attack) => Some(ServerLie::new(
                        *attack,
                        context.replicas,
                        context.byzantine,
                        context.seed,
                    )),
                    _ => None,
                };
                Ok(wrap(server, base, context, chaos))
            }
            Role::Worker => {
                let behaviour = plan.behaviour(role, index);
                let flip = match behaviour {
                    Behaviour::Worker(attack) if attack.kind == WorkerAttackKind::LabelFlip => {
                        Some(self.data.train.classes.min(usize::from(u8::MAX)) as u8)
                    }
                    _ => None,
                };
                let shard = self.data.shards.get(index).cloned().unwrap_or_default();
                let batches = Batches::new(
                    self.data.train.clone(),
                    shard,
                    plan.spec.training.batch_size,
                    seed.wrapping_add(1 + index as u64),
                )
                .map_err(AssembleError::Shard)?;
                let source = ShardGradients {
                    model: self.model.clone(),
                    batches,
                    flip,
                    labels: Vec::new(),
                };
                let worker = Worker::new(self.config.clone(), index, Box::new(source));
                let context = LieContext {
                    replicas: plan.workers,
                    byzantine: plan.byzantine_workers,
                    seed: seed ^ (1 << 32 | index as u64),
                };
                let base = match behaviour {
                    Behaviour::Worker(attack) => Some(WorkerLie::new(
                        *attack,
                        context.replicas,
                        context.byzantine,
                        context.seed,
                    )),
                    _ => None,
                };
                Ok(wrap(worker, base, context, chaos))
            }
        }
    }

    /// Every node of the job, servers first.
    pub fn all_nodes(&self) -> Result<Vec<Box<dyn Node>>, AssembleError> {
        let mut nodes = Vec::with_capacity(self.plan.servers + self.plan.workers);
        for index in 0..self.plan.servers {
            nodes.push(self.node(Role::Server, index)?);
        }
        for index in 0..self.plan.workers {
            nodes.push(self.node(Role::Worker, index)?);
        }
        Ok(nodes)
    }
}

/// Wraps an honest node: in a [`ChaosLie`] when chaos is allowed (the manifest's attack, if
/// any, becomes its base), else in its manifest attack's lie, else not at all.
fn wrap<N, L>(
    node: N,
    base: Option<L>,
    context: LieContext,
    chaos: Option<ChaosHandle>,
) -> (Box<dyn Node>, Option<ChaosHandle>)
where
    N: Armable,
    L: Lie<N> + NamedLie + 'static,
{
    match (chaos, base) {
        (Some(handle), base) => {
            let base = base.map(|lie| (lie.attack_name(), Box::new(lie) as Box<dyn Lie<N>>));
            let lie = ChaosLie::new(handle.clone(), context, base);
            (Box::new(Byzantine::with_lie(node, lie)), Some(handle))
        }
        (None, Some(lie)) => (Box::new(Byzantine::with_lie(node, lie)), None),
        (None, None) => (Box::new(node), None),
    }
}
