//! # byzsgd-e2e
//!
//! Test-only. The end-to-end tests (`tests/*.rs`, built with the `tier-c` feature) drive the
//! product as a user does — the image archives imported into containerd, `helm install` of the
//! chart, `kubectl apply` of the examples, `kubectl get bsgd` — on the testbed's tier c, where
//! every server and worker is a real pod training over the pod network, and check the result
//! with a kube client, the pods' own `/status`, and a real Prometheus configured from the
//! chart's PodMonitor and ServiceMonitor. `README.md` in this directory says what each test
//! proves.
//!
//! This library is their support; its pure parts are unit-tested by the ordinary
//! `cargo test --workspace`. Modules, bottom to top (a module imports only modules above it):
//!
//! - [`timing`] — phase timings as JSON lines on stderr.
//! - [`prometheus`] — a real Prometheus on a temp dir (shared with
//!   `node/tests/observability.rs`, which includes the file).
//! - [`promql`] — the chart's dashboard and rule queries and their checks (shared likewise).
//! - [`monitors`] — PodMonitor/ServiceMonitor → Prometheus scrape configs.
//! - [`cluster`] — paths, the user's commands, the kube client, waits, HTTP to pods.
//! - [`workload`] — jobs, their pods and the nodes' `/status`; `kubectl get` tables.
//! - [`stack`] — images, monitoring CRDs, the chart's Helm release, Prometheus from its monitors.
//!
//! It links neither the node nor the operator: it runs their binaries and images.

pub mod timing;
pub mod prometheus;
pub mod promql;
pub mod monitors;
pub mod cluster;
pub mod workload;
pub mod stack;
