//! The `spec` of a `ByzantineChaos`: which job, which role, which of its nodes, what they do
//! and when. Pure data with serde and JSON-schema derives; the same types back the custom
//! resource (its `///` comments become `kubectl explain` text) and the file the local runner
//! reads. Selector modes follow Chaos Mesh's `mode`/`value` pair (ANCHORS.md §2).

use std::{fmt, time::Duration};

use byzsgd_core::{attack::AttackParams, job::Role};
use serde::{Deserialize, Serialize};

/// What a `ByzantineChaos` does to which nodes of a job, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChaosSpec {
    /// `metadata.name` of the `ByzSGDJob` to act on (same namespace).
    pub job: String,
    /// Which role the chosen nodes have: `server` or `worker`.
    pub role: Role,
    /// Which nodes of that role are hit (default: `mode: one`).
    #[serde(default)]
    pub selector: Selector,
    /// What the chosen nodes do.
    pub action: ChaosAction,
    /// When the action applies (default: from step 0 to the end of the job).
    #[serde(default)]
    pub window: Window,
    /// Seed of the random choice of nodes for modes `one`, `fixed` and `fixed-percent`
    /// (default: the job's `training.seed`), so a run is reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Which nodes of the role are hit, as in Chaos Mesh's `mode` and `value`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// `one` (one node, chosen by the seed), `all`, `fixed` (`value` nodes, chosen by the
    /// seed), `fixed-percent` (⌊`value` % of the role⌋ nodes, chosen by the seed) or `indices`
    /// (exactly `indices`).
    pub mode: SelectorMode,
    /// The count for `fixed`, the percentage (0–100) for `fixed-percent`; unset otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// The node indices for `indices`, each in `0..replicas`; unset otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<usize>>,
}

/// How [`Selector`] chooses nodes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SelectorMode {
    /// One node, chosen by the seed.
    #[default]
    One,
    /// Every node of the role.
    All,
    /// `value` nodes, chosen by the seed.
    Fixed,
    /// ⌊`value` × replicas / 100⌋ nodes, chosen by the seed (Chaos Mesh rounds down too).
    FixedPercent,
    /// Exactly the listed `indices`.
    Indices,
}

impl SelectorMode {
    /// The mode's name as written in a chaos file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::One => "one",
            Self::All => "all",
            Self::Fixed => "fixed",
            Self::FixedPercent => "fixed-percent",
            Self::Indices => "indices",
        }
    }
}

/// What the chosen nodes do during the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(transform = byzsgd_core::schema::structural_tagged_union)]
pub enum ChaosAction {
    /// Run an attack of the attack module in place of the honest outputs; the node keeps
    /// following the protocol underneath, so it can stop lying at the end of the window.
    Attack {
        /// The attack's name, as in `spec.inject[].attack` of a job (e.g. `alie` for workers,
        /// `equivocate` for servers). `label-flip` acts on training data and cannot be switched
        /// on at run time: use `spec.inject` for it.
        name: String,
        /// The attack's parameters (all optional; each attack documents its defaults).
        #[serde(default)]
        params: AttackParams,
    },
    /// Kill the node; the operator or the local runner restarts it per the job's policy.
    Crash,
    /// Delay every message the node sends.
    Delay {
        /// Added to every send, e.g. `50ms` or `1.5s`.
        latency: ChaosDuration,
        /// Uniform extra delay in [0, jitter] on top of `latency` (default `0s`).
        #[serde(default)]
        jitter: ChaosDuration,
    },
    /// Drop every message between the node and the listed peers, both ways.
    Partition {
        /// Peer names such as `server-1` or `worker-3`.
        peers: Vec<String>,
    },
    /// Send nothing (stay connected and keep receiving).
    Silence,
    /// Send `target` junk as fast as the link takes it, besides the node's own messages: a
    /// resource-exhaustion attack, to show a correct node stays bounded (memory, fairness).
    Flood {
        /// The node flooded, such as `server-0`.
        target: String,
        /// `max-size` (well-formed, model-sized messages for steps far ahead, default) or
        /// `malformed` (vectors whose length does not match their data).
        #[serde(default)]
        message: FloodMessage,
    },
}

/// What a `flood` sends.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FloodMessage {
    /// Well-formed messages of the largest size the job allows, tagged with steps far ahead.
    #[default]
    MaxSize,
    /// Messages that fail the edge checks (a vector whose length does not match its data).
    Malformed,
}

impl ChaosAction {
    /// The action's kind as written in a chaos file.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Attack { .. } => "attack",
            Self::Crash => "crash",
            Self::Delay { .. } => "delay",
            Self::Partition { .. } => "partition",
            Self::Silence => "silence",
            Self::Flood { .. } => "flood",
        }
    }
}

/// When the action applies: a step range, or a wall-clock duration from when it is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    /// First step (the paper's t) the action applies to (default 0).
    #[serde(default)]
    pub from_step: u64,
    /// First step it no longer applies to; unset: until the end of the job (or `duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_step: Option<u64>,
    /// How long the action lasts once applied, e.g. `30s` or `2m`, instead of `untilStep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<ChaosDuration>,
}

impl Window {
    /// Whether step `step` lies in the step range (`duration` is the runtime's business).
    pub fn contains(&self, step: u64) -> bool {
        step >= self.from_step && self.until_step.is_none_or(|until| step < until)
    }
}

/// A duration written with a unit, as Kubernetes and Chaos Mesh write them: `250ms`, `2s`,
/// `1.5m`, `1h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChaosDuration(pub Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a duration: write a non-negative number followed by `ms`, `s`, `m` or `h`, \
     e.g. `250ms` or `1.5s`"
)]
pub struct BadDuration(pub String);

impl std::str::FromStr for ChaosDuration {
    type Err = BadDuration;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadDuration(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, unit) = trimmed.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let seconds_per_unit = match unit {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        Duration::try_from_secs_f64(number * seconds_per_unit)
            .map(Self)
            .map_err(|_| bad())
    }
}

impl fmt::Display for ChaosDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_secs_f64() * 1e3)
    }
}

impl Serialize for ChaosDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChaosDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A string with a unit; described by hand so the CRD validates the format.
impl schemars::JsonSchema for ChaosDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ChaosDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$",
            "description": "A duration with a unit: `250ms`, `2s`, `1.5m`, `1h`.",
        })
    }
}
