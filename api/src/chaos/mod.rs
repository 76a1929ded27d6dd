//! Chaos experiments: the `ByzantineChaos` format (one YAML for the Kubernetes custom resource
//! and for runs without Kubernetes), its validation against a job [`Plan`](byzsgd_core::job::Plan),
//! and the deterministic choice of the nodes it hits. Pure: no I/O except reading a file in
//! [`ChaosResource::from_file`]. Switching a running node's behaviour is the protocol's part
//! (`byzsgd_core::protocol::chaos`) and the node's (its admin `POST /chaos`), and the
//! custom resource around the spec is [`ByzantineChaos`].
//!
//! Chaos Mesh injects faults below the application and cannot rewrite gRPC payloads; Litmus
//! adds a verdict per experiment (ANCHORS.md §2). This format borrows Chaos Mesh's selector
//! modes and adds the Byzantine `attack` action that only the node itself can perform.

mod check;
mod resource;
mod spec;

use std::path::Path;

pub use check::{InvalidChaos, RuntimeAttackError, runtime_attack, select, validate};
pub use resource::{
    ByzantineChaos, ByzantineChaosSpec, ByzantineChaosStatus, ChaosCondition, ChaosPhase, Verdict,
};
pub use spec::{
    BadDuration, ChaosAction, ChaosDuration, ChaosSpec, FloodMessage, Selector, SelectorMode,
    Window,
};

use crate::manifest::{ManifestError, parse_envelope, parse_spec, read_text};

/// Kind of the chaos resource (group and version are the job's, `byzsgd.io/v1alpha1`).
pub const KIND: &str = "ByzantineChaos";

/// A parsed `ByzantineChaos`: its name and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosResource {
    /// `metadata.name`.
    pub name: String,
    /// `spec`.
    pub spec: ChaosSpec,
}

impl ChaosResource {
    /// Reads and parses a chaos file.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// Parses chaos text; `origin` names it in errors. Unknown fields are errors naming their
    /// path, so a typo never silently disables part of an experiment.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let (name, spec) = parse_envelope(text, origin, KIND)?;
        let spec = parse_spec(spec, origin)?;
        Ok(Self { name, spec })
    }
}
