//! Byzantine parameter servers: what a server sends in place of its honest model, including
//! equivocation (different models to different receivers), the worst case for ByzSGD's
//! scatter/gather and DMC. Pure functions of a [`ServerView`]; no I/O.

use std::{fmt, str::FromStr};

use ndarray::{Array1, ArrayView1, Zip};
use serde::{Deserialize, Serialize};

use super::{
    AttackError,
    math::{
        SERVER_STREAM, alie, alie_z_saturating, attack_rng, drop_coordinates, gaussian, mean,
        min_max, usable,
    },
    params::{AttackParams, Param},
};

/// The behaviours a Byzantine server can have. Names (serde, clap, `Display`, `FromStr`) are
/// kebab-case: `random`, `reverse`, `partial-drop`, `stale`, `equivocate`, `silence`, `alie`,
/// `silence-half`, `dissensus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerAttackKind {
    /// Send an N(0, scale²) model (Garfield `byzServer` random, PAPER.md §6).
    Random,
    /// Send `factor` × the own model, −100 by default (Garfield `byzServer`, PAPER.md §6).
    Reverse,
    /// Zero a seeded `fraction` of the model's coordinates (Garfield `byzServer`, PAPER.md §6).
    PartialDrop,
    /// Replay the own model from `lag` steps ago: plausible, but holds receivers back
    /// (ANCHORS.md §6, "Byzantine server attacks").
    Stale,
    /// Send a different model to each half of the receivers, on opposite sides of the
    /// correct models' mean, to push correct nodes apart (PAPER.md §6 and §11 item 10).
    Equivocate,
    /// Send nothing (a crashed or muted server).
    Silence,
    /// "A little is enough" on models: μ − z·σ of the correct servers' models, coordinate-wise,
    /// to every receiver (Baruch et al., NeurIPS 2019, moved from gradients to the models DMC
    /// takes the median of). z from n_ps and f_ps as for workers, or `params.z`.
    Alie,
    /// Send nothing to the first half of the receivers (indices below receivers/2) and the
    /// honest model to the rest: selective silence, so half of the correct nodes wait for a
    /// quorum without it while the others count it.
    SilenceHalf,
    /// Dissensus, aimed at DMC: to each correct server, at a gather, the model that pushes its
    /// coordinate-wise median farthest towards its own side of the correct models — per
    /// coordinate the correct maximum where the receiver's model is above their mean, the
    /// minimum where it is below (`strength` 1; values past the correct range move a median
    /// no further). So each correct server's deviation is amplified instead of contracted,
    /// maximising the drift between them (ANCHORS.md §3.5: He, Karimireddy, Jaggi 2022's
    /// dissensus, moved from gossip to ByzSGD's gathers). Towards workers, and before it has
    /// seen the receiver's model, it equivocates.
    Dissensus,
}

impl ServerAttackKind {
    /// Every server attack, in declaration order (for sweeps and help texts).
    pub const ALL: [Self; 9] = [
        Self::Random,
        Self::Reverse,
        Self::PartialDrop,
        Self::Stale,
        Self::Equivocate,
        Self::Silence,
        Self::Alie,
        Self::SilenceHalf,
        Self::Dissensus,
    ];

    /// The attack's name, as in manifests, flags and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Reverse => "reverse",
            Self::PartialDrop => "partial-drop",
            Self::Stale => "stale",
            Self::Equivocate => "equivocate",
            Self::Silence => "silence",
            Self::Alie => "alie",
            Self::SilenceHalf => "silence-half",
            Self::Dissensus => "dissensus",
        }
    }

    /// Whether the attack reads the correct servers' models ([`ServerView::honest`]).
    /// Without them `equivocate` and `alie` cannot measure the honest spread and send the own
    /// model.
    pub const fn needs_honest(self) -> bool {
        matches!(self, Self::Equivocate | Self::Alie | Self::Dissensus)
    }

    /// The parameters this attack reads.
    pub const fn params_used(self) -> &'static [Param] {
        match self {
            Self::Random => &[Param::Scale],
            Self::Reverse => &[Param::Factor],
            Self::PartialDrop => &[Param::Fraction],
            Self::Stale => &[Param::Lag],
            Self::Equivocate | Self::Dissensus => &[Param::Strength],
            Self::Alie => &[Param::Z],
            Self::Silence | Self::SilenceHalf => &[],
        }
    }
}

impl fmt::Display for ServerAttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServerAttackKind {
    type Err = AttackError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        super::parse_kind(&Self::ALL, Self::as_str, "server", s)
    }
}

/// What a Byzantine server sees when it crafts the model for one receiver at one step.
#[derive(Debug, Clone, Copy)]
pub struct ServerView<'a> {
    /// The model it would honestly send.
    pub own: ArrayView1<'a, f32>,
    /// The correct servers' current models, if known (omniscient adversary); may be empty.
    /// Vectors whose length differs from `own` are ignored.
    pub honest: &'a [ArrayView1<'a, f32>],
    /// Its own past models, oldest first; the last entry is the model of the previous step
    /// (one step old) and `own` is not included.
    pub history: &'a [Array1<f32>],
    /// The step (the paper's t).
    pub step: u64,
    /// Index of the receiver (server or worker) in `0..receivers`.
    pub receiver: usize,
    /// How many receivers this message goes to (splits them into halves for equivocation).
    pub receivers: usize,
    /// The receiver's own model as the attacker last saw it (its latest gather), when the
    /// receiver is a server and one was seen; `dissensus` pushes it further out.
    pub receiver_model: Option<ArrayView1<'a, f32>>,
    /// Number of servers, n_ps.
    pub n: usize,
    /// Declared number of Byzantine servers, f_ps.
    pub f: usize,
    /// The attack's seed (from the job's seed and the attacker's identity).
    pub seed: u64,
}

/// A server attack: which behaviour and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerAttack {
    /// The behaviour.
    pub kind: ServerAttackKind,
    /// Its parameters; unset ones take their defaults.
    #[serde(default)]
    pub params: AttackParams,
}

impl ServerAttack {
    /// `kind` with default parameters.
    pub fn new(kind: ServerAttackKind) -> Self {
        Self {
            kind,
            params: AttackParams::default(),
        }
    }

    /// Checks the parameters against the attack. Call it when a job is admitted:
    /// [`Self::craft`] never fails, it clamps instead.
    pub fn validate(&self) -> Result<(), AttackError> {
        self.params
            .validate_for(self.kind.as_str(), self.kind.params_used())
    }

    /// How many past models [`ServerView::history`] must hold for this attack to behave as
    /// configured (`lag` for `stale`, 0 otherwise), so the runtime keeps no more than that.
    pub fn history_needed(&self) -> usize {
        match self.kind {
            ServerAttackKind::Stale => {
                usize::try_from(self.params.lag_or_default()).unwrap_or(usize::MAX)
            }
            _ => 0,
        }
    }

    /// Receivers with the same class get the same model from [`Self::craft`] at one step (of
    /// `receivers`), so a caller crafts and encodes once per class: an equivocating server
    /// builds two models per step, not one per worker.
    pub fn receiver_class(&self, receiver: usize, receivers: usize) -> usize {
        match self.kind {
            ServerAttackKind::Random
            | ServerAttackKind::PartialDrop
            | ServerAttackKind::Dissensus => receiver,
            ServerAttackKind::Equivocate | ServerAttackKind::SilenceHalf => {
                usize::from(!equivocate_low_half(receiver, receivers))
            }
            ServerAttackKind::Reverse
            | ServerAttackKind::Stale
            | ServerAttackKind::Silence
            | ServerAttackKind::Alie => 0,
        }
    }

    /// The model to send to `view.receiver` at `view.step`, or `None` to send nothing.
    ///
    /// Deterministic in (`seed`, `step`, `receiver`) and the inputs; never panics.
    pub fn craft(&self, view: &ServerView<'_>) -> Option<Array1<f32>> {
        let params = &self.params;
        let own = view.own;
        let rng = || attack_rng(SERVER_STREAM, view.seed, view.step, view.receiver);
        let model = match self.kind {
            ServerAttackKind::Random => {
                gaussian(&mut rng(), own.len(), params.scale_or_default() as f32)
            }
            ServerAttackKind::Reverse => {
                let factor = params.factor_or_default() as f32;
                own.mapv(|x| x * factor)
            }
            ServerAttackKind::PartialDrop => {
                let mut v = own.to_owned();
                drop_coordinates(&mut v, params.fraction_or_default(), &mut rng());
                v
            }
            ServerAttackKind::Stale => stale(&own, view.history, params.lag_or_default()),
            ServerAttackKind::Equivocate => equivocate(view, params.strength_or_default()),
            ServerAttackKind::Silence => return None,
            ServerAttackKind::Alie => alie(
                &usable(view.honest, &own),
                params
                    .z
                    .unwrap_or_else(|| alie_z_saturating(view.n, view.f)),
            ),
            ServerAttackKind::SilenceHalf => {
                if equivocate_low_half(view.receiver, view.receivers) {
                    return None;
                }
                own.to_owned()
            }
            ServerAttackKind::Dissensus => match view.receiver_model {
                Some(target) if target.len() == own.len() => {
                    dissensus(view, target, params.strength_or_default())
                }
                _ => equivocate(view, params.strength_or_default()),
            },
        };
        Some(model)
    }
}

impl From<ServerAttackKind> for ServerAttack {
    fn from(kind: ServerAttackKind) -> Self {
        Self::new(kind)
    }
}

/// The model `lag` steps old: `history[len − lag]`. A history shorter than `lag` gives its
/// oldest entry (the stalest model available), an empty one or `lag = 0` gives `own`.
fn stale(own: &ArrayView1<'_, f32>, history: &[Array1<f32>], lag: u64) -> Array1<f32> {
    let lag = usize::try_from(lag).unwrap_or(usize::MAX);
    if lag == 0 {
        return own.to_owned();
    }
    history
        .get(history.len().saturating_sub(lag))
        .map_or_else(|| own.to_owned(), Clone::clone)
}

/// Equivocation: receivers `0..receivers/2` get `μ − strength·(μ − min)`, the others
/// `μ + strength·(max − μ)`, coordinate-wise over the correct servers' models (μ their mean).
///
/// Why this shape: ByzSGD's DMC takes a coordinate-wise median of models and its filters
/// bound distances to honest values (El-Mhamdi et al., PODC 2020), so a value outside the
/// honest range is discarded or has bounded effect. With `strength` ≤ 1 every coordinate
/// stays inside [min, max] of the honest models, so no rule can tell it from a correct model
/// by range, while each half's median is pulled towards its own extreme — in opposite
/// directions, which drives correct nodes apart. A symmetric ±strength·σ would leave the range
/// for skewed honest values ({0, 0, 0, 0, 10}: μ − σ < min). With fewer than two honest models
/// the spread is zero and every receiver gets μ.
fn equivocate(view: &ServerView<'_>, strength: f64) -> Array1<f32> {
    let honest = usable(view.honest, &view.own);
    let mu = mean(&honest);
    let (lo, hi) = min_max(&honest);
    let low_half = equivocate_low_half(view.receiver, view.receivers);
    // Plain multiply-add, not `mul_add`: without the FMA target feature that is a libm call
    // per coordinate.
    Zip::from(&mu).and(&lo).and(&hi).map_collect(|&m, &l, &h| {
        let edge = if low_half { f64::from(l) } else { f64::from(h) };
        (m + strength * (edge - m)) as f32
    })
}

/// Dissensus towards one correct server whose model is `target`: per coordinate, the mean of
/// the correct models moved by `strength` towards their maximum where `target` is at or above
/// the mean, towards their minimum where it is below.
fn dissensus(view: &ServerView<'_>, target: ArrayView1<'_, f32>, strength: f64) -> Array1<f32> {
    let honest = usable(view.honest, &view.own);
    let mu = mean(&honest);
    let (lo, hi) = min_max(&honest);
    Zip::from(&mu)
        .and(&lo)
        .and(&hi)
        .and(&target)
        .map_collect(|&m, &l, &h, &t| {
            let edge = if f64::from(t) >= m {
                f64::from(h)
            } else {
                f64::from(l)
            };
            (m + strength * (edge - m)) as f32
        })
}

/// Whether `receiver` (of `receivers`) is in the half that equivocation pushes low (and that
/// `silence-half` ignores).
fn equivocate_low_half(receiver: usize, receivers: usize) -> bool {
    receiver < receivers / 2
}
