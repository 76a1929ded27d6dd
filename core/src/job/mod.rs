//! The job as data: the training spec users write ([`JobSpec`], the `spec` of a `ByzSGDJob`
//! minus its pod-level fields) and the resolved [`Plan`] every runtime starts from. Parsing,
//! validation and the Kubernetes resource around the spec are `byzsgd-api`'s.

pub mod plan;
pub mod spec;

pub use plan::{Behaviour, Plan, auto_gather_every};
pub use spec::{
    AggregationSpec, ChaosPolicy, ConvergenceSpec, DatasetName, DatasetSpec, GatherEvery,
    Injection, JobSpec, Mode, Role, ServerSpec, TrainingSpec, WorkerSpec,
};
