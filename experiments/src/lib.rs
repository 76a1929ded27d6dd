//! Chaos scenarios and the experiment runner behind `byzsgd-exp`.
//!
//! # Layout
//!
//! - [`scenario`]: the scenario file (base manifest, chaos files, grid, claims, plots).
//! - [`grid`]: grid axes → runs, each a manifest with overrides applied (pure).
//! - [`backend`]: where a run executes — [`backend::sim`] (in-process, virtual time),
//!   [`backend::local`] (`byzsgd-node local`), [`backend::kube`] (a cluster via the operator).
//! - [`sweep`]: runs a scenario's grid on a backend with progress, writing the CSVs as it goes.
//! - [`results`]: the tidy `results.csv` and `summary.csv`, the stable interface.
//! - [`claims`]: claims and their computed verdicts.
//! - [`plot`]: PNG figures from the CSVs.
//! - [`report`]: the Markdown report over several scenarios.
//! - [`cli`]: the command line.

pub mod backend;
pub mod claims;
pub mod cli;
pub mod grid;
pub mod plot;
pub mod report;
pub mod results;
pub mod scenario;
pub mod sweep;
