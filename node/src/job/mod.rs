//! The job: what the user writes (a `ByzSGDJob` manifest), how it is checked, and the resolved
//! [`Plan`] every runtime (sim, local processes, pods) starts from.

pub mod manifest;
pub mod spec;
pub mod validate;

pub use manifest::{Manifest, ManifestError};
pub use spec::{JobSpec, Role};
pub use validate::{Behaviour, InvalidSpec, Plan, SpecProblem, validate};
