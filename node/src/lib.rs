//! # byzsgd-node
//!
//! The process that runs ByzSGD: one parameter server or worker over gRPC (`byzsgd-node
//! server|worker`, what pods run), or a whole job as separate processes on one machine
//! (`byzsgd-node local FILE`). The algorithm itself — rules, attacks, models, data, the
//! protocol state machines — is `byzsgd-core`'s; the job and chaos formats and the admin wire
//! types are `byzsgd-api`'s. This crate adds the I/O: the wire, the async runtime, the admin
//! HTTP port, metrics, the local runner and the benchmarks.
//!
//! **Must not be a dependency of** `byzsgd-operator` (which runs in a pod of its own and must not
//! link tonic, plotters or resvg).
//!
//! # Layout, bottom to top (a module imports only modules above it in this list)
//!
//! - [`rejection_log`] — the rate-limited log line naming the peer of each dropped message.
//! - [`metrics`] — names and registers every exported metric.
//! - [`rpc`] — the gRPC transport (proto package `byzsgd.v1`), edge checks, identity seam.
//! - [`checkpoint`] — a server's checkpoints and exported model on disk (`.npy` + JSON).
//! - [`state`] — what a running node shares: wiring options, chaos controls, live status.
//! - [`admin`] — serves `/metrics`, `/healthz`, `/readyz`, `/status`, `/model` and the
//!   authenticated `POST /chaos` that arms a run-time attack.
//! - [`runtime`] — drives one node over the transport.
//! - [`local`] — `byzsgd-node local FILE`, a whole job as separate processes on loopback.
//! - [`mod@bench`] — the figures printed by `byzsgd-node bench …` (JSON lines).
//! - [`cli`] — the `byzsgd-node` command line.

pub mod rejection_log;

pub mod metrics;

pub mod rpc;

pub mod checkpoint;

pub mod state;

pub mod admin;

pub mod runtime;

pub mod local;

pub mod bench;

pub mod cli;
