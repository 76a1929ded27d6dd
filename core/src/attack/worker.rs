//! Byzantine workers: what a worker sends in place of its honest gradient, and label flipping,
//! the one attack that acts on the data instead. Pure functions of a [`WorkerView`]; no I/O.

use std::{fmt, str::FromStr};

use ndarray::{Array1, ArrayView1};
use serde::{Deserialize, Serialize};

use crate::gar::GarConfig;

use super::{
    AttackError, agnostic,
    math::{
        WORKER_STREAM, alie, alie_z, alie_z_saturating, attack_rng, drop_coordinates, gaussian,
        mean, usable,
    },
    optimal,
    params::{AttackParams, Param},
};

/// The behaviours a Byzantine worker can have. Names (serde, clap, `Display`, `FromStr`) are
/// kebab-case: `random`, `reverse`, `partial-drop`, `sign-flip`, `gaussian`, `alie`, `foe`,
/// `mimic`, `nan`, `inf`, `neg-inf`, `label-flip`, `min-max`, `min-sum`, `optimal-ipm`,
/// `optimal-alie`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerAttackKind {
    /// Send N(0, scale²) noise instead of the gradient (Garfield `random`, PAPER.md §6;
    /// Gaussian rather than Garfield's uniform [0, 1) so the magnitude is one knob).
    Random,
    /// Send `factor` × the own gradient, −100 by default (Garfield `reverse`, PAPER.md §6).
    Reverse,
    /// Zero a seeded `fraction` of the own gradient's coordinates (Garfield `drop`, PAPER.md §6).
    PartialDrop,
    /// Send −(mean of the honest gradients) (ByzFL `SignFlipping`, ANCHORS.md §3.1).
    SignFlip,
    /// Add N(0, std²) noise to the own gradient (ByzFL/Blades noise attacks, ANCHORS.md §3).
    Gaussian,
    /// "A little is enough": mean − z·std of the honest gradients, coordinate-wise (Baruch
    /// et al., NeurIPS 2019).
    Alie,
    /// "Fall of empires" / inner-product manipulation: −ε·(mean of the honest gradients)
    /// (Xie, Koyejo, Gupta, UAI 2019).
    Foe,
    /// Copy one honest worker's gradient (Karimireddy, He, Jaggi, ICLR 2022).
    Mimic,
    /// Send a vector of NaN.
    Nan,
    /// Send a vector of +∞ (ByzFL `Inf`, ANCHORS.md §3.1).
    Inf,
    /// Send a vector of −∞.
    NegInf,
    /// Train on labels y → classes − 1 − y and send the resulting gradient honestly (ByzFL
    /// `LabelFlipping`, ANCHORS.md §3.1).
    LabelFlip,
    /// mean − λ·(unit mean) with the largest λ that keeps every honest gradient within the
    /// honest diameter of it (Shejwalkar and Houmansadr, NDSS 2021; see `agnostic`).
    MinMax,
    /// mean − λ·(unit mean) with the largest λ whose summed squared distance to the honest
    /// gradients is no more than an honest gradient's (Shejwalkar and Houmansadr, NDSS 2021).
    MinSum,
    /// −τ·(mean of the honest gradients) with τ line-searched each step to push the rule's
    /// aggregate farthest from the honest mean (ByzFL `Optimal_InnerProductManipulation`; see
    /// `optimal`).
    OptimalIpm,
    /// mean − τ·std of the honest gradients with τ line-searched the same way (ByzFL
    /// `Optimal_ALittleIsEnough`).
    OptimalAlie,
}

impl WorkerAttackKind {
    /// Every worker attack, in declaration order (for sweeps and help texts).
    pub const ALL: [Self; 16] = [
        Self::Random,
        Self::Reverse,
        Self::PartialDrop,
        Self::SignFlip,
        Self::Gaussian,
        Self::Alie,
        Self::Foe,
        Self::Mimic,
        Self::Nan,
        Self::Inf,
        Self::NegInf,
        Self::LabelFlip,
        Self::MinMax,
        Self::MinSum,
        Self::OptimalIpm,
        Self::OptimalAlie,
    ];

    /// The attack's name, as in manifests, flags and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Reverse => "reverse",
            Self::PartialDrop => "partial-drop",
            Self::SignFlip => "sign-flip",
            Self::Gaussian => "gaussian",
            Self::Alie => "alie",
            Self::Foe => "foe",
            Self::Mimic => "mimic",
            Self::Nan => "nan",
            Self::Inf => "inf",
            Self::NegInf => "neg-inf",
            Self::LabelFlip => "label-flip",
            Self::MinMax => "min-max",
            Self::MinSum => "min-sum",
            Self::OptimalIpm => "optimal-ipm",
            Self::OptimalAlie => "optimal-alie",
        }
    }

    /// Whether the attack reads the other workers' honest gradients ([`WorkerView::honest`]),
    /// so the runtime knows when it must collect them for the attacker (omniscient,
    /// colluding adversary). Without them these attacks fall back to the own gradient.
    pub const fn needs_honest(self) -> bool {
        matches!(
            self,
            Self::SignFlip
                | Self::Alie
                | Self::Foe
                | Self::Mimic
                | Self::MinMax
                | Self::MinSum
                | Self::OptimalIpm
                | Self::OptimalAlie
        )
    }

    /// Whether receivers get different vectors at one step (the attack draws per receiver);
    /// otherwise every receiver gets the same vector, crafted once.
    pub const fn varies_by_receiver(self) -> bool {
        matches!(self, Self::Random | Self::PartialDrop | Self::Gaussian)
    }

    /// The parameters this attack reads.
    pub const fn params_used(self) -> &'static [Param] {
        match self {
            Self::Random => &[Param::Scale],
            Self::Reverse => &[Param::Factor],
            Self::PartialDrop => &[Param::Fraction],
            Self::Gaussian => &[Param::Std],
            Self::Alie => &[Param::Z],
            Self::Foe => &[Param::Epsilon],
            Self::Mimic => &[Param::Target],
            Self::SignFlip
            | Self::Nan
            | Self::Inf
            | Self::NegInf
            | Self::LabelFlip
            | Self::MinMax
            | Self::MinSum
            | Self::OptimalIpm
            | Self::OptimalAlie => &[],
        }
    }
}

impl fmt::Display for WorkerAttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkerAttackKind {
    type Err = AttackError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        super::parse_kind(&Self::ALL, Self::as_str, "worker", s)
    }
}

/// What a Byzantine worker sees when it crafts the vector for one receiver at one step.
#[derive(Debug, Clone, Copy)]
pub struct WorkerView<'a> {
    /// The honest gradients of this step the attacker can see (the omniscient, colluding
    /// adversary of the paper). May be empty: attacks then use [`Self::own`] alone. Vectors
    /// whose length differs from `own` are ignored.
    pub honest: &'a [ArrayView1<'a, f32>],
    /// The honest gradient this node would have sent.
    pub own: ArrayView1<'a, f32>,
    /// The step (the paper's t).
    pub step: u64,
    /// Index of the server the vector is for; random attacks draw per receiver.
    pub receiver: usize,
    /// Number of workers, n_w.
    pub n: usize,
    /// Declared number of Byzantine workers, f_w.
    pub f: usize,
    /// The attack's seed (from the job's seed and the attacker's identity).
    pub seed: u64,
    /// The gradient rule the servers apply, for the attacks that adapt to it
    /// (`optimal-ipm`, `optimal-alie`); `None`: they assume averaging.
    pub rule: Option<&'a GarConfig>,
}

/// A worker attack: which behaviour and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerAttack {
    /// The behaviour.
    pub kind: WorkerAttackKind,
    /// Its parameters; unset ones take their defaults.
    #[serde(default)]
    pub params: AttackParams,
}

impl WorkerAttack {
    /// `kind` with default parameters.
    pub fn new(kind: WorkerAttackKind) -> Self {
        Self {
            kind,
            params: AttackParams::default(),
        }
    }

    /// Checks the parameters against the attack and, for `alie` without an explicit z, that
    /// z can be derived from `n` and `f`. Call it when a job is admitted: [`Self::craft`]
    /// never fails, it clamps instead.
    pub fn validate(&self, n: usize, f: usize) -> Result<(), AttackError> {
        self.params
            .validate_for(self.kind.as_str(), self.kind.params_used())?;
        if self.kind == WorkerAttackKind::Alie && self.params.z.is_none() {
            alie_z(n, f)?;
        }
        Ok(())
    }

    /// Whether the attack acts on the training data (see [`flip_labels`]) rather than on the
    /// vector; [`Self::craft`] then returns the own gradient unchanged.
    pub fn flips_labels(&self) -> bool {
        self.kind == WorkerAttackKind::LabelFlip
    }

    /// Receivers with the same class get the same vector from [`Self::craft`] at one step, so
    /// a caller crafts once per class and shares it: one ALIE vector for every server instead
    /// of one mean and deviation pass per server.
    pub fn receiver_class(&self, receiver: usize) -> usize {
        if self.kind.varies_by_receiver() {
            receiver
        } else {
            0
        }
    }

    /// The vector to send to `view.receiver` at `view.step`, or `None` to send nothing.
    ///
    /// Deterministic in (`seed`, `step`, `receiver`) and the inputs. Never panics: parameters
    /// out of range are clamped or propagate into the vector (a NaN scale gives NaN), and an
    /// `alie` z that n and f cannot define is clamped (see [`alie_z`]); use
    /// [`Self::validate`] to reject such settings up front.
    pub fn craft(&self, view: &WorkerView<'_>) -> Option<Array1<f32>> {
        let params = &self.params;
        let own = view.own;
        let d = own.len();
        let rng = || attack_rng(WORKER_STREAM, view.seed, view.step, view.receiver);
        let vector = match self.kind {
            WorkerAttackKind::Random => gaussian(&mut rng(), d, params.scale_or_default() as f32),
            WorkerAttackKind::Reverse => {
                let factor = params.factor_or_default() as f32;
                own.mapv(|x| x * factor)
            }
            WorkerAttackKind::PartialDrop => {
                let mut v = own.to_owned();
                drop_coordinates(&mut v, params.fraction_or_default(), &mut rng());
                v
            }
            WorkerAttackKind::SignFlip => mean(&usable(view.honest, &own)).mapv(|m| (-m) as f32),
            WorkerAttackKind::Gaussian => {
                own.to_owned() + gaussian(&mut rng(), d, params.std_or_default() as f32)
            }
            WorkerAttackKind::Alie => alie(
                &usable(view.honest, &own),
                params
                    .z
                    .unwrap_or_else(|| alie_z_saturating(view.n, view.f)),
            ),
            WorkerAttackKind::Foe => {
                let epsilon = params.epsilon_or_default();
                // Xie et al. (2019): once the aggregate's inner product with the true gradient
                // turns negative the step ascends the loss; a small ε keeps the vector short,
                // so distance-based rules still accept it.
                mean(&usable(view.honest, &own)).mapv(|m| (-epsilon * m) as f32)
            }
            WorkerAttackKind::Mimic => {
                let honest = usable(view.honest, &own);
                // NB: `usable` is never empty, so the modulus is non-zero.
                honest[params.target_or_default() % honest.len()].to_owned()
            }
            WorkerAttackKind::Nan => Array1::from_elem(d, f32::NAN),
            WorkerAttackKind::Inf => Array1::from_elem(d, f32::INFINITY),
            WorkerAttackKind::NegInf => Array1::from_elem(d, f32::NEG_INFINITY),
            WorkerAttackKind::LabelFlip => own.to_owned(),
            WorkerAttackKind::MinMax => {
                agnostic::craft(&usable(view.honest, &own), agnostic::Criterion::MinMax)
            }
            WorkerAttackKind::MinSum => {
                agnostic::craft(&usable(view.honest, &own), agnostic::Criterion::MinSum)
            }
            WorkerAttackKind::OptimalIpm => optimal::craft(
                &usable(view.honest, &own),
                optimal::Family::InnerProduct,
                view.n,
                view.f,
                view.rule,
            ),
            WorkerAttackKind::OptimalAlie => optimal::craft(
                &usable(view.honest, &own),
                optimal::Family::LittleIsEnough,
                view.n,
                view.f,
                view.rule,
            ),
        };
        Some(vector)
    }
}

impl From<WorkerAttackKind> for WorkerAttack {
    fn from(kind: WorkerAttackKind) -> Self {
        Self::new(kind)
    }
}

/// Maps every label y to `classes − 1 − y` in place: the label-flipping attack (ByzFL
/// `LabelFlipping`, ANCHORS.md §3.1), applied to the batch a Byzantine worker trains on.
///
/// Labels outside `0..classes` are left unchanged rather than wrapped: they are invalid data,
/// which the data loader rejects, and wrapping would invent a class.
pub fn flip_labels(labels: &mut [u8], classes: u8) {
    for y in labels.iter_mut().filter(|y| **y < classes) {
        *y = classes - 1 - *y;
    }
}
