//! The operator's Prometheus metrics, under the `byzsgd_operator_` prefix (DESIGN.md §5): the
//! names are part of the interface that dashboards and alerts use. Plus one per-job series
//! the dashboards share with `byzsgd-node local`, without the prefix:
//! `byzsgd_correct_servers_max_drift{namespace, job_name}`.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use byzsgd_api::job::JobState;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Prefix of the operator's own metrics.
pub const PREFIX: &str = "byzsgd_operator";

/// Every state a job can be in, for the `jobs{phase}` gauge ("Pending" = no status yet).
pub const PHASES: [&str; 7] = [
    "Pending",
    "Created",
    "Running",
    "Restarting",
    "Suspended",
    "Succeeded",
    "Failed",
];

/// Collector handles (cheap clones of what the registry holds).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `byzsgd_operator_reconcile_total`: reconciles started (of jobs and of chaos experiments).
    pub reconciles: IntCounter,
    /// `byzsgd_operator_reconcile_errors_total{kind}`: reconciles that failed, by error kind.
    pub errors: IntCounterVec,
    /// `byzsgd_operator_reconcile_duration_seconds`: wall time of one reconcile.
    pub duration: Histogram,
    /// `byzsgd_operator_jobs{phase}`: jobs the operator sees, by state.
    pub jobs: IntGaugeVec,
    /// `byzsgd_operator_chaos_active{namespace,chaos,job}`: 1 while a `ByzantineChaos` acts on
    /// its job's pods (phase Running), else 0; dashboards draw it as annotations.
    pub chaos_active: IntGaugeVec,
    /// `byzsgd_correct_servers_max_drift{namespace,job_name}`: the largest distance between
    /// correct servers' models (`controller::drift`), what the scatter/gather bound is about.
    pub max_drift: GaugeVec,
    /// The (namespace, job) pairs `max_drift` has a series for, so deleted jobs' go away.
    drift_jobs: Arc<Mutex<BTreeSet<(String, String)>>>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let reconciles = IntCounter::with_opts(
            Opts::new(
                "reconcile_total",
                "Reconciles started (ByzSGDJobs and ByzantineChaos)",
            )
            .namespace(PREFIX),
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Reconciles that failed, by error kind",
            )
            .namespace(PREFIX),
            &["kind"],
        )?;
        // A reconcile lists pods, applies a handful of objects and polls n_ps servers with a
        // 2 s timeout: 5 ms (all cached) to 10 s (slow servers and API server).
        let duration = Histogram::with_opts(
            HistogramOpts::new("reconcile_duration_seconds", "Wall time of one reconcile")
                .namespace(PREFIX)
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
        )?;
        let jobs = IntGaugeVec::new(
            Opts::new("jobs", "ByzSGDJobs by state").namespace(PREFIX),
            &["phase"],
        )?;
        let chaos_active = IntGaugeVec::new(
            Opts::new(
                "chaos_active",
                "1 while a ByzantineChaos acts on its job's pods, else 0",
            )
            .namespace(PREFIX),
            &["namespace", "chaos", "job"],
        )?;
        let max_drift = GaugeVec::new(
            Opts::new(
                "byzsgd_correct_servers_max_drift",
                "Largest distance between correct servers' models at the latest step all of them passed",
            ),
            &["namespace", "job_name"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(chaos_active.clone()))?;
        registry.register(Box::new(max_drift.clone()))?;
        Ok(Self {
            reconciles,
            errors,
            duration,
            jobs,
            chaos_active,
            max_drift,
            drift_jobs: Arc::default(),
        })
    }

    /// Sets the measured drift of `job` in `namespace`.
    pub fn set_drift(&self, namespace: &str, job: &str, drift: f64) {
        self.max_drift
            .with_label_values(&[namespace, job])
            .set(drift);
        if let Ok(mut known) = self.drift_jobs.lock() {
            known.insert((namespace.to_owned(), job.to_owned()));
        }
    }

    /// Drops the drift series of every job not in `existing` (deleted jobs).
    pub fn retain_drift(&self, existing: &BTreeSet<(String, String)>) {
        let Ok(mut known) = self.drift_jobs.lock() else {
            return;
        };
        for (namespace, job) in known.iter().filter(|key| !existing.contains(*key)) {
            let _ = self.max_drift.remove_label_values(&[namespace, job]);
        }
        known.retain(|key| existing.contains(key));
    }

    /// Sets the `jobs{phase}` gauge from the states of every known job.
    pub fn set_jobs(&self, states: impl Iterator<Item = Option<JobState>>) {
        let mut counts = [0_i64; PHASES.len()];
        for state in states {
            let phase = state.map_or("Pending", JobState::as_str);
            if let Some(i) = PHASES.iter().position(|p| *p == phase) {
                counts[i] += 1;
            }
        }
        for (phase, count) in PHASES.iter().zip(counts) {
            self.jobs.with_label_values(&[phase]).set(count);
        }
    }
}

/// The registry of the operator (each metric names its own prefix).
pub fn registry() -> Registry {
    Registry::new()
}

/// Renders `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(%error, "cannot encode metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the dashboards' interface: the operator's under its prefix, the drift
    /// under the name `byzsgd-node local` exports it with; a deleted job's drift goes away.
    #[test]
    fn metric_names_and_the_drift_of_deleted_jobs() {
        let registry = registry();
        let metrics = Metrics::register(&registry).expect("registers");
        metrics.set_jobs([Some(JobState::Running)].into_iter());
        metrics.set_drift("ns", "a", 0.25);
        metrics.set_drift("ns", "b", 0.5);
        let text = render(&registry);
        assert!(
            text.contains("byzsgd_operator_jobs{phase=\"Running\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("byzsgd_correct_servers_max_drift{job_name=\"a\",namespace=\"ns\"} 0.25"),
            "{text}"
        );
        metrics.retain_drift(&BTreeSet::from([("ns".to_owned(), "b".to_owned())]));
        let text = render(&registry);
        assert!(!text.contains("job_name=\"a\""), "{text}");
        assert!(text.contains("job_name=\"b\""), "{text}");
    }
}
