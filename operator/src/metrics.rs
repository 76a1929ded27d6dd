//! The operator's Prometheus metrics, under the `byzsgd_operator_` prefix (DESIGN.md §5): the
//! names are part of the interface that dashboards and alerts use.

use byzsgd_api::job::JobState;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

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
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let reconciles = IntCounter::new(
            "reconcile_total",
            "Reconciles started (ByzSGDJobs and ByzantineChaos)",
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Reconciles that failed, by error kind",
            ),
            &["kind"],
        )?;
        // A reconcile lists pods, applies a handful of objects and polls n_ps servers with a
        // 2 s timeout: 5 ms (all cached) to 10 s (slow servers and API server).
        let duration = Histogram::with_opts(
            HistogramOpts::new("reconcile_duration_seconds", "Wall time of one reconcile").buckets(
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
        )?;
        let jobs = IntGaugeVec::new(Opts::new("jobs", "ByzSGDJobs by state"), &["phase"])?;
        let chaos_active = IntGaugeVec::new(
            Opts::new(
                "chaos_active",
                "1 while a ByzantineChaos acts on its job's pods, else 0",
            ),
            &["namespace", "chaos", "job"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(chaos_active.clone()))?;
        Ok(Self {
            reconciles,
            errors,
            duration,
            jobs,
            chaos_active,
        })
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

/// The registry of the operator, with the `byzsgd_operator` prefix.
pub fn registry() -> prometheus::Result<Registry> {
    Registry::new_custom(Some("byzsgd_operator".into()), None)
}

/// Renders `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(%error, "cannot encode metrics");
    }
    out
}
