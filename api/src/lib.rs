//! # byzsgd-api
//!
//! The user-facing contract of ByzSGD, shared by `byzsgd-node`, `byzsgd-operator` and
//! `byzsgd-exp`: the `ByzSGDJob` and `ByzantineChaos` resources (group `byzsgd.io`, version
//! `v1alpha1`), how their files are read, how they are checked (every problem names its field
//! and the fix), the CRDs generated from the types, and the JSON a node's admin port speaks.
//!
//! The training part of a job (`spec` minus `runPolicy`/`template`) is
//! [`byzsgd_core::job::JobSpec`]: the simulator and the protocol read it, so it lives in the core;
//! this crate turns on the core's `schema` feature so the CRD schema comes from those very
//! types. Validation resolves a spec into the core's [`byzsgd_core::job::Plan`]; the bounds it
//! checks are the core's (each rule's `min_inputs`), the field paths and fixes are this crate's.
//!
//! **Must not depend on** `byzsgd-node`, tokio, tonic, the kube client/runtime, prometheus or
//! plotters: it is types and pure functions (kube only for the `CustomResource` derive).
//!
//! # Layout, bottom to top (a module imports only modules above it in this list)
//!
//! - `telemetry` — (feature `telemetry`) the log setup both binaries share.
//! - [`identity`] — a node's name (its certificate's DNS name, its pod's name) and where its
//!   credentials live.
//! - `pki` — (feature `pki`) a job's certificate authority and the node certificates it issues.
//! - [`manifest`] — the resource envelope (`apiVersion`, `kind`, `metadata.name`, `spec`) read
//!   from YAML, with errors naming the path of the bad field; the group and version.
//! - [`mod@validate`] — a [`JobSpec`](byzsgd_core::job::JobSpec) against the paper's and the
//!   rules' bounds, resolved into a [`Plan`](byzsgd_core::job::Plan).
//! - [`chaos`] — the `ByzantineChaos` spec, its checks against a plan, the seeded choice of the
//!   nodes it hits, and its custom resource and status.
//! - [`job`] — the `ByzSGDJob` custom resource: the training spec plus Kubeflow's `runPolicy`
//!   and the pod `template`, its CEL admission rules and its status.
//! - [`admin`] — the wire types of a node's admin port (`/status`, `POST /chaos`).
//! - [`crd`] — the CRD YAML that `crds/` holds and `byzsgd-operator crd` prints.

#[cfg(feature = "telemetry")]
pub mod telemetry;

pub mod identity;
#[cfg(feature = "pki")]
pub mod pki;

pub mod manifest;

pub mod validate;

pub mod chaos;

pub mod job;

pub mod admin;
pub mod crd;

pub use manifest::{API_VERSION, GROUP, Manifest, ManifestError};
pub use validate::{InvalidSpec, SpecProblem, validate};
