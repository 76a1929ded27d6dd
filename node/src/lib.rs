//! # byzsgd-node
//!
//! The algorithm of ByzSGD (El-Mhamdi, Guerraoui, Guirguis, Hoang, Rouault, "Genuinely
//! Distributed Byzantine Machine Learning", PODC 2020) and the process that runs it.
//!
//! # Layout
//!
//! Math core, no I/O:
//! - [`gar`] — gradient/model aggregation rules (GARs) — average, median, trimmed mean, Krum,
//!   Multi-Krum, Bulyan, geometric median, MDA, centered clipping, Meamed — and pre-aggregators.
//! - [`attack`] — Byzantine behaviours as pure functions of what the attacker can see.
//! - [`chaos`] — the `ByzantineChaos` format: which nodes misbehave how and when, at run time.
//! - [`model`] — logistic regression, the paper's MLP 784-100-10, a small CNN; flat `f32`
//!   parameter vectors; SGD with momentum and weight decay.
//! - [`data`] — IDX (MNIST-format) loader and iid / Dirichlet partitions.
//! - [`filter`] — the synchronous variant's Lipschitz and outliers filters.
//!
//! Protocol, no I/O:
//! - [`job`] — the `ByzSGDJob` manifest, its validation and the resolved [`job::Plan`].
//! - [`protocol`] — server and worker state machines (`handle(message) -> outputs`), and the
//!   Byzantine wrappers that apply attacks at the output boundary.
//! - [`assemble`] — builds the nodes of a plan (data, model, shared initial model, attacks).
//! - [`sim`] — a deterministic in-memory network of nodes with delays, drops, partitions and
//!   crashes.
//!
//! Runtime, with I/O:
//! - [`rpc`] — the gRPC transport (proto package `byzsgd.v1`), edge checks, identity seam.
//! - [`runtime`] — drives one node over the transport.
//! - [`admin`] — serves `/metrics`, `/healthz`, `/readyz`, `/status`, `/model` and the
//!   authenticated `POST /chaos` that arms a run-time attack.
//! - [`metrics`] — names every exported metric.
//! - [`local`] — `byzsgd-node local FILE`, a whole job as separate processes on loopback.
//! - [`telemetry`] — logging.
//!
//! Tools:
//! - [`mod@bench`] — the figures printed by `byzsgd-node bench …` (JSON lines).
//! - [`cli`] — the `byzsgd-node` command line.
//!
//! # Glossary
//!
//! server = parameter server; worker; step (the paper's t); gather (the DMC phase every T
//! steps); GAR = gradient aggregation rule; f = the declared number of Byzantine inputs;
//! quorum = the first n − f distinct senders of a step.

pub mod admin;
pub mod assemble;
pub mod attack;
pub mod bench;
pub mod chaos;
pub mod cli;
pub mod data;
pub mod filter;
pub mod gar;
pub mod job;
pub mod local;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod rpc;
pub mod runtime;
pub mod sim;
pub mod telemetry;
