//! # byzsgd-node
//!
//! The algorithm of ByzSGD (El-Mhamdi, Guerraoui, Guirguis, Hoang, Rouault, "Genuinely
//! Distributed Byzantine Machine Learning", PODC 2020) and the process that runs it.
//!
//! # Layout
//!
//! Math core, no I/O:
//! - [`gar`]: gradient/model aggregation rules (GARs) — average, median, trimmed mean, Krum,
//!   Multi-Krum, Bulyan, geometric median, MDA, centered clipping, Meamed — and pre-aggregators.
//! - [`attack`]: Byzantine behaviours as pure functions of what the attacker can see.
//! - [`model`]: logistic regression, the paper's MLP 784-100-10, a small CNN; flat `f32`
//!   parameter vectors; SGD with momentum and weight decay.
//! - [`data`]: IDX (MNIST-format) loader and iid / Dirichlet partitions.
//!
//! Tools:
//! - [`bench`]: the figures printed by `byzsgd-node bench …` (JSON lines).
//! - [`cli`]: the `byzsgd-node` command line.
//!
//! # Glossary
//!
//! server = parameter server; worker; step (the paper's t); gather (the DMC phase every T
//! steps); GAR = gradient aggregation rule; f = the declared number of Byzantine inputs.

pub mod attack;
pub mod bench;
pub mod cli;
pub mod data;
pub mod gar;
pub mod model;
