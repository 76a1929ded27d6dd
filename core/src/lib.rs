//! # byzsgd-core
//!
//! The algorithm of ByzSGD (El-Mhamdi, Guerraoui, Guirguis, Hoang, Rouault, "Genuinely
//! Distributed Byzantine Machine Learning", PODC 2020), with no I/O beyond reading a data set
//! file: every piece here is a pure function or a state machine, so the whole algorithm runs
//! deterministically in the in-memory [`sim`] and is driven over gRPC by `byzsgd-node`.
//!
//! **Must not depend on** tokio, tonic, kube, prometheus, plotters, clap or anything else that
//! does networking, async, Kubernetes, metrics, plotting or command lines. Its dependencies are
//! ndarray, rand (+ rand_distr), serde, thiserror, pulp (safe SIMD dispatch for the aggregation
//! kernels) and flate2 (gzip IDX files); the optional `schema` feature adds schemars so that
//! `byzsgd-api` can generate the CRD schema from these very types.
//!
//! # Layout, bottom to top (a module imports only modules above it in this list)
//!
//! - [`schema`] — (feature `schema`) the structural-schema transform for tagged enums.
//! - [`gar`] — gradient/model aggregation rules (GARs) — average, median, trimmed mean, Krum,
//!   Multi-Krum, Bulyan, geometric median, MDA, centered clipping, Meamed — and pre-aggregators.
//! - [`attack`] — Byzantine behaviours as pure functions of what the attacker can see.
//! - [`model`] — logistic regression, the paper's MLP 784-100-10, a small CNN; flat `f32`
//!   parameter vectors; SGD with momentum and weight decay.
//! - [`data`] — IDX (MNIST-format) loader and iid / Dirichlet partitions.
//! - [`filter`] — the synchronous variant's Lipschitz and outliers filters.
//! - [`job`] — the training spec users write ([`job::JobSpec`]) and the resolved [`job::Plan`].
//! - [`protocol`] — server and worker state machines (`handle(message) -> outputs`), the
//!   Byzantine wrappers that apply attacks at the output boundary, and run-time chaos arming.
//! - [`assemble`] — builds the nodes of a plan (data, model, shared initial model, attacks).
//! - [`sim`] — a deterministic in-memory network of nodes with delays, drops, partitions and
//!   crashes.
//!
//! # Glossary
//!
//! server = parameter server; worker; step (the paper's t); gather (the DMC phase every T
//! steps); GAR = gradient aggregation rule; f = the declared number of Byzantine inputs;
//! quorum = the first n − f distinct senders of a step.

#[cfg(feature = "schema")]
pub mod schema;

pub mod gar;

pub mod attack;
pub mod model;

pub mod data;
pub mod filter;

pub mod job;

pub mod protocol;

pub mod assemble;
pub mod sim;
