//! Chaos scenarios and the experiment runner behind `byzsgd-exp`, on top of the whole
//! workspace: the core's simulator, the API's manifests and chaos checks, and `byzsgd-node`'s
//! local runner. Nothing depends on this crate.
//!
//! # Layout, bottom to top (a module imports only modules above it in this list)
//!
//! - [`results`] — the tidy `results.csv` and `summary.csv`, the stable interface, and the
//!   statistics computed over them.
//! - [`grid`] — grid axes → runs, each a manifest with overrides applied (pure).
//! - [`claims`] — claims and their computed verdicts.
//! - [`scenario`] — the scenario file (base manifest, chaos files, grid, claims, plots).
//! - [`backend`] — where a run executes — [`backend::sim`] (in-process, virtual time),
//!   [`backend::local`] (`byzsgd-node local`), [`backend::kube`] (a cluster via the operator).
//! - [`sweep`] — runs a scenario's grid on a backend with progress, writing the CSVs as it goes.
//! - [`plot`] — PNG figures from the CSVs.
//! - [`report`] — the Markdown report over several scenarios.
//! - [`cli`] — the command line.

pub mod results;
pub mod grid;
pub mod claims;
pub mod scenario;
pub mod backend;
pub mod sweep;
pub mod plot;
pub mod report;
pub mod cli;
