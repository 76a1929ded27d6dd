//! Byzantine behaviours: what a Byzantine worker or server sends instead of its honest vector.
//!
//! Every attack is a pure function of what the attacker can see — the honest vectors of the
//! step (the omniscient, colluding adversary of ByzSGD's analysis), its own honest output,
//! the step, the receiver, n, f and a seed — so it is deterministic for a given
//! (seed, step, receiver) and runs identically in the simulator, the local runner and a pod.
//! The protocol applies an attack only at the output boundary (the honest value is computed,
//! then [`WorkerAttack::craft`] or [`ServerAttack::craft`] replaces it), so honest code never
//! asks "am I Byzantine". No I/O, no clocks, no global state.
//!
//! | role | attack | sends | source |
//! |---|---|---|---|
//! | worker | `random` | N(0, scale²) | Garfield (Guerraoui et al., DSN 2021) |
//! | worker | `reverse` | factor · own (−100) | Garfield |
//! | worker | `partial-drop` | own with a fraction of coordinates zeroed | Garfield |
//! | worker | `sign-flip` | −mean(honest) | ByzFL `SignFlipping` |
//! | worker | `gaussian` | own + N(0, std²) | ByzFL / Blades noise |
//! | worker | `alie` | mean − z·std (z from n, f) | Baruch et al., NeurIPS 2019 |
//! | worker | `foe` | −ε · mean(honest) | Xie, Koyejo, Gupta, UAI 2019 |
//! | worker | `mimic` | `honest[target]` | Karimireddy, He, Jaggi, ICLR 2022 |
//! | worker | `nan`, `inf`, `neg-inf` | non-finite vector | ByzFL `Inf` |
//! | worker | `label-flip` | own, trained on y → classes − 1 − y | ByzFL `LabelFlipping` |
//! | worker | `min-max` | mean − λ·unit(mean), largest λ inside the honest diameter | Shejwalkar & Houmansadr, NDSS 2021 |
//! | worker | `min-sum` | mean − λ·unit(mean), largest λ with an honest-like distance sum | Shejwalkar & Houmansadr, NDSS 2021 |
//! | worker | `optimal-ipm` | −τ·mean(honest), τ line-searched against the rule in use | ByzFL `Optimal_InnerProductManipulation` (Xie et al. 2019) |
//! | worker | `optimal-alie` | mean − τ·std, τ line-searched against the rule in use | ByzFL `Optimal_ALittleIsEnough` (Baruch et al. 2019) |
//! | server | `random`, `reverse`, `partial-drop` | as for workers, on the model | Garfield |
//! | server | `stale` | own model from `lag` steps ago | this project |
//! | server | `equivocate` | a different model per half of the receivers | PAPER.md §6 |
//! | server | `silence` | nothing | — |
//! | server | `alie` | mean − z·std of the correct models | Baruch et al. 2019, on models |
//! | server | `dissensus` | per receiver and coordinate, the correct max or min on the receiver's side of their mean | He, Karimireddy, Jaggi 2022 (gossip), on DMC |
//! | server | `silence-half` | nothing to the first half of the receivers, own model to the rest | this project (issue #16) |
//!
//! Parameters ([`AttackParams`]) are part of the user manifest; [`WorkerAttack::validate`] and
//! [`ServerAttack::validate`] reject bad ones when a job is admitted, while `craft` never fails
//! (it clamps), because an attack running mid-training has nobody to report to.

mod agnostic;
mod math;
mod optimal;
mod params;
mod server;
mod worker;

pub use math::{alie_z, normal_quantile};
pub use params::{
    AttackParams, DEFAULT_EPSILON, DEFAULT_FACTOR, DEFAULT_FRACTION, DEFAULT_LAG, DEFAULT_SCALE,
    DEFAULT_STD, DEFAULT_STRENGTH, DEFAULT_TARGET, Param,
};
pub use server::{ServerAttack, ServerAttackKind, ServerView};
use thiserror::Error;
pub use worker::{WorkerAttack, WorkerAttackKind, WorkerView, flip_labels};

/// Finds the attack kind named `name` among `all`, or lists the valid names for `role`.
fn parse_kind<K: Copy>(
    all: &[K],
    label: fn(K) -> &'static str,
    role: &'static str,
    name: &str,
) -> Result<K, AttackError> {
    all.iter()
        .copied()
        .find(|kind| label(*kind) == name)
        .ok_or_else(|| AttackError::UnknownAttack {
            role,
            name: name.to_owned(),
            expected: all
                .iter()
                .map(|kind| label(*kind))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Why an attack name or its parameters were rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AttackError {
    /// The name is not one of the role's attacks.
    #[error("unknown {role} attack `{name}`: expected one of {expected}")]
    UnknownAttack {
        /// `worker` or `server`.
        role: &'static str,
        /// The name given.
        name: String,
        /// The valid names, comma-separated.
        expected: String,
    },
    /// A parameter is set that the chosen attack does not read (most likely a typo for
    /// another knob).
    #[error(
        "attack parameter `{param}` has no effect on attack `{attack}`: remove it \
         (`{attack}` reads: {used})"
    )]
    UnusedParam {
        /// The parameter set.
        param: &'static str,
        /// The attack it was given to.
        attack: String,
        /// The parameters that attack reads, comma-separated, or `none`.
        used: String,
    },
    /// A parameter's value is outside its range.
    #[error("attack parameter `{param}` = {value} is invalid: it must be {expected}")]
    InvalidParam {
        /// The parameter.
        param: &'static str,
        /// The value given.
        value: f64,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// n and f do not define a finite z for "a little is enough".
    #[error(
        "the `alie` z is undefined for n = {n}, f = {f}: s = ⌊n/2 + 1⌋ − f must lie in \
         1..n (Baruch et al. 2019); use n ≥ 3f + 1 with n ≥ 3, or set `params.z` explicitly"
    )]
    AlieUndefined {
        /// Number of workers.
        n: usize,
        /// Declared number of Byzantine workers.
        f: usize,
    },
}
