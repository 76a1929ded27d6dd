//! The node's Prometheus metrics. Names are part of the product's interface (DESIGN.md §5):
//! dashboards and alert rules query them. Labels are bounded: `rule`, `kind`, `reason`,
//! `direction`, `attack` take values from small enums, `peer` from the job's node names.
//!
//! [`Metrics::observe`] turns protocol events into metric updates, so the runtime has one place
//! where "what happened" becomes "what is exported".

use std::{fmt::Display, sync::Arc};

use byzsgd_core::protocol::{Event, Kind, NodeId, Rejection};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::rejection_log::RejectionLog;

/// Step and aggregation times span from ~100 µs (a median of a small model) to seconds (a slow
/// quorum on a loaded machine): exponential buckets from 50 µs to ~13 s.
fn time_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(5e-5, 2.0, 19).unwrap_or_default()
}

/// Every metric a node exports, registered under the `byzsgd_` prefix.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The node's step counter.
    pub step: IntGauge,
    /// Median mini-batch loss of the last aggregated quorum (servers) or own loss (workers).
    pub train_loss: Gauge,
    /// Last test accuracy (servers).
    pub test_accuracy: Gauge,
    /// Last test loss (servers).
    pub test_loss: Gauge,
    /// Steps completed.
    pub steps_total: IntCounter,
    /// Wall time per step.
    pub step_seconds: Histogram,
    /// Time spent in aggregation rules.
    pub aggregation_seconds: HistogramVec,
    /// Time spent waiting for a quorum.
    pub quorum_wait_seconds: HistogramVec,
    /// Gathers (DMC) completed.
    pub gathers_total: IntCounter,
    /// Crash recoveries: restarts that adopted the median of the peers' models.
    pub recoveries_total: IntCounter,
    /// Distance of the server's model to the DMC median at the last gather.
    pub drift_to_median: Gauge,
    /// Distance to each peer model received at the last gather.
    pub peer_distance: GaugeVec,
    /// Inputs a rule left out, by sender and kind.
    pub excluded_total: IntCounterVec,
    /// Incoming messages dropped, by reason.
    pub rejected_total: IntCounterVec,
    /// Messages by direction (`in`, `out`) and kind.
    pub messages_total: IntCounterVec,
    /// Vector bytes by direction and kind.
    pub bytes_total: IntCounterVec,
    /// 1 while this node runs the named attack.
    pub byzantine_active: IntGaugeVec,
    /// Synchronous mode: models refused by a filter.
    pub filter_rejections_total: IntCounterVec,
    /// Distinct senders a quorum needs, by what it collects: `model` (server models, n_ps −
    /// f_ps) and `gradient` (worker gradients, n_w − f_w), so alerts can compare live nodes
    /// with what the job really requires. (Not labelled `role`: that is this node's own.)
    pub quorum_size: IntGaugeVec,
    /// Step of the newest checkpoint this server wrote (0: none yet).
    pub checkpoint_step: IntGauge,
    /// Checkpoints or final models that could not be written.
    pub checkpoint_failures_total: IntCounter,
    /// The log lines that name the peer of each dropped message (rate-limited).
    rejection_log: Arc<RejectionLog>,
}

impl Metrics {
    /// Registers every metric in `registry` (created with the `byzsgd` prefix).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::create()?;
        for collector in metrics.collectors() {
            registry.register(collector)?;
        }
        Ok(metrics)
    }

    /// Every metric, not yet registered.
    fn create() -> prometheus::Result<Self> {
        Ok(Self {
            step: IntGauge::new("step", "The node's current step")?,
            train_loss: Gauge::new(
                "train_loss",
                "Mini-batch training loss (median over the last quorum on servers)",
            )?,
            test_accuracy: Gauge::new(
                "test_accuracy",
                "Test accuracy of the server's model at the last evaluation",
            )?,
            test_loss: Gauge::new(
                "test_loss",
                "Test loss of the server's model at the last evaluation",
            )?,
            steps_total: IntCounter::new("steps_total", "Learning steps completed")?,
            step_seconds: Histogram::with_opts(
                HistogramOpts::new("step_seconds", "Wall time of one learning step")
                    .buckets(time_buckets()),
            )?,
            aggregation_seconds: HistogramVec::new(
                HistogramOpts::new("aggregation_seconds", "Time spent in aggregation rules")
                    .buckets(time_buckets()),
                &["rule", "kind"],
            )?,
            quorum_wait_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "quorum_wait_seconds",
                    "Time waiting for the first n - f distinct senders",
                )
                .buckets(time_buckets()),
                &["kind"],
            )?,
            gathers_total: IntCounter::new("gathers_total", "Gathers (DMC) completed")?,
            recoveries_total: IntCounter::new(
                "recoveries_total",
                "Restarts that found the peers ahead and adopted the median of their models",
            )?,
            drift_to_median: Gauge::new(
                "drift_to_median",
                "Distance of the model to the DMC median at the last gather",
            )?,
            peer_distance: GaugeVec::new(
                Opts::new(
                    "peer_distance",
                    "Distance to each peer model received at the last gather",
                ),
                &["peer"],
            )?,
            excluded_total: IntCounterVec::new(
                Opts::new("excluded_total", "Inputs an aggregation rule left out"),
                &["peer", "kind"],
            )?,
            rejected_total: IntCounterVec::new(
                Opts::new("rejected_total", "Incoming messages dropped"),
                &["reason"],
            )?,
            messages_total: IntCounterVec::new(
                Opts::new("messages_total", "Protocol messages"),
                &["direction", "kind"],
            )?,
            bytes_total: IntCounterVec::new(
                Opts::new("bytes_total", "Bytes of vectors in protocol messages"),
                &["direction", "kind"],
            )?,
            byzantine_active: IntGaugeVec::new(
                Opts::new(
                    "byzantine_active",
                    "1 while this node runs the named attack",
                ),
                &["attack"],
            )?,
            filter_rejections_total: IntCounterVec::new(
                Opts::new(
                    "filter_rejections_total",
                    "Models refused by the synchronous filters",
                ),
                &["filter"],
            )?,
            quorum_size: IntGaugeVec::new(
                Opts::new(
                    "quorum_size",
                    "Distinct senders a quorum needs (n - f), by the kind of vector it collects",
                ),
                &["kind"],
            )?,
            checkpoint_step: IntGauge::new(
                "checkpoint_step",
                "Step of the newest checkpoint this server wrote",
            )?,
            checkpoint_failures_total: IntCounter::new(
                "checkpoint_failures_total",
                "Checkpoints or final models that could not be written",
            )?,
            rejection_log: Arc::default(),
        })
    }

    /// Every metric as a collector, for registration.
    fn collectors(&self) -> [Box<dyn prometheus::core::Collector>; 21] {
        [
            Box::new(self.step.clone()),
            Box::new(self.quorum_size.clone()),
            Box::new(self.train_loss.clone()),
            Box::new(self.test_accuracy.clone()),
            Box::new(self.test_loss.clone()),
            Box::new(self.steps_total.clone()),
            Box::new(self.step_seconds.clone()),
            Box::new(self.aggregation_seconds.clone()),
            Box::new(self.quorum_wait_seconds.clone()),
            Box::new(self.gathers_total.clone()),
            Box::new(self.recoveries_total.clone()),
            Box::new(self.drift_to_median.clone()),
            Box::new(self.peer_distance.clone()),
            Box::new(self.excluded_total.clone()),
            Box::new(self.rejected_total.clone()),
            Box::new(self.messages_total.clone()),
            Box::new(self.bytes_total.clone()),
            Box::new(self.byzantine_active.clone()),
            Box::new(self.filter_rejections_total.clone()),
            Box::new(self.checkpoint_step.clone()),
            Box::new(self.checkpoint_failures_total.clone()),
        ]
    }

    /// Counts a message sent or received.
    pub fn message(&self, direction: Direction, kind: Kind, bytes: usize) {
        self.messages_total
            .with_label_values(&[direction.as_str(), kind.as_str()])
            .inc();
        self.bytes_total
            .with_label_values(&[direction.as_str(), kind.as_str()])
            .inc_by(bytes as u64);
    }

    /// Counts a message dropped from `peer` (a node, or the address of a refused connection)
    /// and names the peer in a rate-limited log line.
    pub fn rejected(&self, peer: &dyn Display, reason: Rejection) {
        self.dropped(peer, reason.as_str());
    }

    /// Counts a message a chaos partition dropped (`reason="partition"`).
    pub fn partitioned(&self, peer: NodeId) {
        self.dropped(&peer, "partition");
    }

    fn dropped(&self, peer: &dyn Display, reason: &'static str) {
        self.rejected_total.with_label_values(&[reason]).inc();
        self.rejection_log.note(peer, reason);
    }

    /// Messages dropped so far, every reason together (`/status.rejected`): read from the
    /// counter itself, so the edge, the protocol and chaos partitions are counted once.
    pub fn rejected_count(&self) -> u64 {
        use prometheus::core::Collector;
        self.rejected_total
            .collect()
            .iter()
            .flat_map(prometheus::proto::MetricFamily::get_metric)
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }

    /// Applies one protocol event.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Stepped { step, loss } => {
                self.step.set(i64::try_from(*step).unwrap_or(i64::MAX));
                self.steps_total.inc();
                if loss.is_finite() {
                    self.train_loss.set(f64::from(*loss));
                }
            }
            Event::GradientSent { step, loss } => {
                self.step
                    .set(i64::try_from(*step).unwrap_or(i64::MAX).saturating_add(1));
                self.steps_total.inc();
                if loss.is_finite() {
                    self.train_loss.set(f64::from(*loss));
                }
            }
            Event::Aggregated {
                kind,
                rule,
                excluded,
                seconds,
                ..
            } => {
                self.aggregation_seconds
                    .with_label_values(&[rule.name(), kind.as_str()])
                    .observe(*seconds);
                for peer in excluded {
                    self.excluded_total
                        .with_label_values(&[&peer_label(*peer), kind.as_str()])
                        .inc();
                }
            }
            Event::Gathered {
                step,
                drift_to_median,
                peer_distances,
            } => {
                // A lagging server may catch up through a later gather, skipping steps.
                let step = i64::try_from(*step).unwrap_or(i64::MAX);
                if step > self.step.get() {
                    self.step.set(step);
                }
                self.gathers_total.inc();
                self.drift_to_median.set(f64::from(*drift_to_median));
                for (peer, distance) in peer_distances {
                    self.peer_distance
                        .with_label_values(&[&peer_label(*peer)])
                        .set(f64::from(*distance));
                }
            }
            Event::Evaluated { accuracy, loss, .. } => {
                self.test_accuracy.set(f64::from(*accuracy));
                self.test_loss.set(f64::from(*loss));
            }
            Event::FilterRejected { filter, .. } => self
                .filter_rejections_total
                .with_label_values(&[filter])
                .inc(),
            Event::Recovered { step, .. } => {
                self.recoveries_total.inc();
                self.step.set(i64::try_from(*step).unwrap_or(i64::MAX));
            }
            Event::Finished => {}
        }
    }
}

/// `server-3`, `worker-0`: bounded by the job's size.
fn peer_label(peer: NodeId) -> String {
    peer.to_string()
}

/// Whether a message left or arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received.
    In,
    /// Sent.
    Out,
}

impl Direction {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let encoder = prometheus::TextEncoder::new();
    encoder
        .encode_to_string(&registry.gather())
        .unwrap_or_default()
}
