//! The tunable knobs of the attacks as written in a job manifest (`params:` next to an
//! `attack:` name), their defaults, and the checks that reject nonsense before a job starts.
//! Pure data; no I/O.

use serde::{Deserialize, Serialize};

use super::AttackError;

/// Default standard deviation of the `random` attacks' N(0, scale²) vectors.
pub const DEFAULT_SCALE: f64 = 1.0;
/// Default multiplier of `reverse`: −100 × the honest vector, as in Garfield (PAPER.md §6).
pub const DEFAULT_FACTOR: f64 = -100.0;
/// Default share of coordinates zeroed by `partial-drop`: 0.3, Garfield's drop probability.
pub const DEFAULT_FRACTION: f64 = 0.3;
/// Default standard deviation of the noise that `gaussian` adds to the honest gradient.
pub const DEFAULT_STD: f64 = 1.0;
/// Default ε of "fall of empires": 0.1, the value Xie et al. (UAI 2019) use against
/// distance-based rules such as Krum.
pub const DEFAULT_EPSILON: f64 = 0.1;
/// Default age, in steps, of the model a `stale` server replays.
pub const DEFAULT_LAG: u64 = 10;
/// Default honest input copied by `mimic`: the first one.
pub const DEFAULT_TARGET: usize = 0;
/// Default strength of `equivocate`: 1, i.e. each half of the receivers gets the honest
/// models' coordinate-wise extreme on its side (the edge of what a filter must accept).
pub const DEFAULT_STRENGTH: f64 = 1.0;

/// One field of [`AttackParams`], used to say which knobs an attack reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    /// [`AttackParams::scale`].
    Scale,
    /// [`AttackParams::factor`].
    Factor,
    /// [`AttackParams::fraction`].
    Fraction,
    /// [`AttackParams::std`].
    Std,
    /// [`AttackParams::z`].
    Z,
    /// [`AttackParams::epsilon`].
    Epsilon,
    /// [`AttackParams::lag`].
    Lag,
    /// [`AttackParams::target`].
    Target,
    /// [`AttackParams::strength`].
    Strength,
}

impl Param {
    /// The field's name as written in a manifest (camelCase).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Scale => "scale",
            Self::Factor => "factor",
            Self::Fraction => "fraction",
            Self::Std => "std",
            Self::Z => "z",
            Self::Epsilon => "epsilon",
            Self::Lag => "lag",
            Self::Target => "target",
            Self::Strength => "strength",
        }
    }
}

/// Joins parameter names for error messages ("none" when the attack takes no parameter).
pub(crate) fn names(params: &[Param]) -> String {
    if params.is_empty() {
        return "none".to_owned();
    }
    params
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parameters of an attack. Every field is optional; an unset field takes the documented
/// default, and a field the chosen attack does not read is rejected by `validate` (it is most
/// likely a typo for another knob).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AttackParams {
    /// `random`: standard deviation of the N(0, scale²) coordinates sent instead of the honest
    /// vector. Finite, ≥ 0. Default [`DEFAULT_SCALE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// `reverse`: the honest vector is multiplied by this. Finite. Default [`DEFAULT_FACTOR`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// `partial-drop`: share of coordinates set to 0, in [0, 1]. Default [`DEFAULT_FRACTION`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// `gaussian`: standard deviation of the noise added to the honest gradient. Finite, ≥ 0.
    /// Default [`DEFAULT_STD`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// `alie`: how many standard deviations to shift from the honest mean. Finite. Default:
    /// derived from n and f as in Baruch et al. (2019), see [`super::alie_z`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    /// `foe`: the ε of −ε·(honest mean). Finite, > 0. Default [`DEFAULT_EPSILON`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// `stale`: age in steps of the replayed model. Default [`DEFAULT_LAG`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// `mimic`: index of the honest input to copy (taken modulo the number visible).
    /// Default [`DEFAULT_TARGET`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<usize>,
    /// `equivocate`: how far towards the honest extremes each half of the receivers is
    /// pushed; within [0, 1] every coordinate stays inside the honest range. Finite, ≥ 0.
    /// Default [`DEFAULT_STRENGTH`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
}

impl AttackParams {
    /// [`Self::scale`] or its default.
    pub fn scale_or_default(&self) -> f64 {
        self.scale.unwrap_or(DEFAULT_SCALE)
    }

    /// [`Self::factor`] or its default.
    pub fn factor_or_default(&self) -> f64 {
        self.factor.unwrap_or(DEFAULT_FACTOR)
    }

    /// [`Self::fraction`] or its default.
    pub fn fraction_or_default(&self) -> f64 {
        self.fraction.unwrap_or(DEFAULT_FRACTION)
    }

    /// [`Self::std`] or its default.
    pub fn std_or_default(&self) -> f64 {
        self.std.unwrap_or(DEFAULT_STD)
    }

    /// [`Self::epsilon`] or its default.
    pub fn epsilon_or_default(&self) -> f64 {
        self.epsilon.unwrap_or(DEFAULT_EPSILON)
    }

    /// [`Self::lag`] or its default.
    pub fn lag_or_default(&self) -> u64 {
        self.lag.unwrap_or(DEFAULT_LAG)
    }

    /// [`Self::target`] or its default.
    pub fn target_or_default(&self) -> usize {
        self.target.unwrap_or(DEFAULT_TARGET)
    }

    /// [`Self::strength`] or its default.
    pub fn strength_or_default(&self) -> f64 {
        self.strength.unwrap_or(DEFAULT_STRENGTH)
    }

    /// The fields that are set, in declaration order.
    pub fn set_fields(&self) -> Vec<Param> {
        let present = [
            (Param::Scale, self.scale.is_some()),
            (Param::Factor, self.factor.is_some()),
            (Param::Fraction, self.fraction.is_some()),
            (Param::Std, self.std.is_some()),
            (Param::Z, self.z.is_some()),
            (Param::Epsilon, self.epsilon.is_some()),
            (Param::Lag, self.lag.is_some()),
            (Param::Target, self.target.is_some()),
            (Param::Strength, self.strength.is_some()),
        ];
        present
            .into_iter()
            .filter_map(|(param, set)| set.then_some(param))
            .collect()
    }

    /// Checks that every set field is one `attack` reads (`used`) and lies in its range.
    pub(crate) fn validate_for(&self, attack: &str, used: &[Param]) -> Result<(), AttackError> {
        if let Some(&param) = self.set_fields().iter().find(|p| !used.contains(p)) {
            return Err(AttackError::UnusedParam {
                param: param.name(),
                attack: attack.to_owned(),
                used: names(used),
            });
        }
        check(Param::Scale, self.scale, "a finite number ≥ 0", |x| {
            x.is_finite() && x >= 0.0
        })?;
        check(
            Param::Factor,
            self.factor,
            "a finite number",
            f64::is_finite,
        )?;
        check(Param::Fraction, self.fraction, "a number in [0, 1]", |x| {
            (0.0..=1.0).contains(&x)
        })?;
        check(Param::Std, self.std, "a finite number ≥ 0", |x| {
            x.is_finite() && x >= 0.0
        })?;
        check(Param::Z, self.z, "a finite number", f64::is_finite)?;
        check(
            Param::Epsilon,
            self.epsilon,
            "a finite number > 0 (Xie et al. use 0.1 to 10)",
            |x| x.is_finite() && x > 0.0,
        )?;
        check(
            Param::Strength,
            self.strength,
            "a finite number ≥ 0",
            |x| x.is_finite() && x >= 0.0,
        )
    }
}

/// Fails with [`AttackError::InvalidParam`] when `value` is set and not `ok`.
fn check(
    param: Param,
    value: Option<f64>,
    expected: &'static str,
    ok: impl Fn(f64) -> bool,
) -> Result<(), AttackError> {
    match value {
        Some(value) if !ok(value) => Err(AttackError::InvalidParam {
            param: param.name(),
            value,
            expected,
        }),
        _ => Ok(()),
    }
}
