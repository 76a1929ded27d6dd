//! Gradient and model aggregation rules (GARs) and the pre-aggregators that may run in front of
//! them. Pure math over `f32` vectors: no I/O, no clock, no global state.
//!
//! A GAR turns `n` vectors, of which up to `f` may be Byzantine (arbitrary, colluding, possibly
//! non-finite), into one vector. ByzSGD uses two of them (PAPER.md §4, §11 item 3): **MDA** for
//! gradients on the servers and the **coordinate-wise median** for models (workers at every step,
//! servers at gather). The others are here for comparison with the libraries users know (ByzFL,
//! Garfield; ANCHORS.md §3).
//!
//! Every rule has a lower bound on `n` for a given `f` ([`Rule::min_inputs`]); below it
//! [`aggregate`] returns [`GarError::TooFewInputs`] naming the bound, never a panic. Robust rules
//! never let `f` or fewer non-finite or huge inputs poison their output: sorts order NaN as +∞,
//! and distance-based rules treat a non-finite (or overflowing) distance as +∞, so such inputs are
//! never selected while `n − f` finite inputs exist.
//!
//! Layout: one rule per file (`average`, `median`, `trimmed_mean`, `krum` (with Multi-Krum),
//! `bulyan`, `geometric_median`, `mda`, `centered_clipping`, `meamed`); `pre` holds the
//! pre-aggregators; `order` and `network` hold the comparator networks behind the coordinate-wise
//! rules; `distances` holds the pairwise-distance kernel behind Krum, Bulyan, MDA and NNM;
//! `rows` validates the input shape once.
//!
//! Speed: the hot kernels are explicit SIMD through `pulp`, whose safe run-time dispatch picks
//! AVX-512, AVX2 + FMA or scalar code on the machine at hand (the binary targets baseline x86-64
//! and the workspace forbids `unsafe`). `byzsgd-node bench gars` measures every rule against the
//! time to read its inputs once.

// The SIMD kernels run inside pulp's dispatch, which compiles them for AVX2/AVX-512 only if
// every function of their hot loops is inlined into it: `#[inline(always)]` is load-bearing.
#![allow(clippy::inline_always)]

mod average;
mod bulyan;
mod centered_clipping;
mod distances;
mod geometric_median;
mod krum;
mod mda;
mod meamed;
mod median;
mod network;
mod order;
mod pre;
mod rows;
mod trimmed_mean;

use std::{fmt, str::FromStr};

pub use distances::pairwise_sq_distances;
pub use krum::krum_scores;
pub use mda::min_diameter_subset;
pub use median::coordinate_median;
use ndarray::{Array1, ArrayView1};
use rows::Rows;
use serde::{Deserialize, Serialize};

/// An aggregation rule. Names (serde, clap, [`Display`](fmt::Display), [`FromStr`]) are the
/// kebab-case forms listed in [`Rule::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Arithmetic mean; not Byzantine-robust (one input moves it arbitrarily far): the
    /// vanilla-SGD baseline. n ≥ 1; O(n·d).
    Average,
    /// Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, ICML 2018); ByzSGD's model rule
    /// (PAPER.md §11 item 3). Even n: mean of the two middle values; NaN ordered as +∞.
    /// n ≥ 2f + 1; O(n log² n · d) comparisons.
    Median,
    /// Coordinate-wise trimmed mean: drops the f largest and f smallest values per coordinate
    /// (Yin et al., ICML 2018). n ≥ 2f + 1; O(n log² n · d).
    TrimmedMean,
    /// Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017): the input with the smallest
    /// sum of squared distances to its n − f − 2 nearest neighbours. n ≥ 2f + 3; O(n²·d).
    Krum,
    /// Multi-Krum (El Mhamdi, Guerraoui, Rouault, ICML 2018): the mean of the m inputs with the
    /// best Krum scores (m defaults to n − f). n ≥ 2f + 3; O(n²·d).
    MultiKrum,
    /// Bulyan over Krum (El Mhamdi, Guerraoui, Rouault, ICML 2018): θ = n − 2f inputs chosen by
    /// iterated Krum, then per coordinate the mean of the β = θ − 2f values closest to their
    /// median. n ≥ 4f + 3; O(n²·d).
    Bulyan,
    /// Smoothed geometric median by Weiszfeld iterations (Pillutla, Kakade, Harchaoui, IEEE TSP
    /// 2022). n ≥ 2f + 1; O(n·d) per iteration.
    GeometricMedian,
    /// Minimum-Diameter Averaging (El-Mhamdi et al., PODC 2020; PAPER.md §4): the mean of the
    /// n − f inputs with the smallest diameter, found exactly by a pruned search. ByzSGD's
    /// gradient rule. 2f + 1 ≤ n ≤ 128; O(n²·d) plus the search.
    Mda,
    /// Centered clipping (Karimireddy, He, Jaggi, ICML 2021), started from the coordinate-wise
    /// median. n ≥ 2f + 1; O(n·d) per iteration.
    CenteredClipping,
    /// Mean around the median (Xie, Koyejo, Gupta, "Generalized Byzantine-tolerant SGD", 2018):
    /// per coordinate, the mean of the n − f values closest to the median. n ≥ 2f + 1;
    /// O(n log² n · d).
    Meamed,
}

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 10] = [
        Rule::Average,
        Rule::Median,
        Rule::TrimmedMean,
        Rule::Krum,
        Rule::MultiKrum,
        Rule::Bulyan,
        Rule::GeometricMedian,
        Rule::Mda,
        Rule::CenteredClipping,
        Rule::Meamed,
    ];

    /// The rule's stable kebab-case name, as used by serde, clap and the metrics' `rule` label.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Average => "average",
            Rule::Median => "median",
            Rule::TrimmedMean => "trimmed-mean",
            Rule::Krum => "krum",
            Rule::MultiKrum => "multi-krum",
            Rule::Bulyan => "bulyan",
            Rule::GeometricMedian => "geometric-median",
            Rule::Mda => "mda",
            Rule::CenteredClipping => "centered-clipping",
            Rule::Meamed => "meamed",
        }
    }

    /// Smallest number of inputs `n` the rule accepts for a declared `f` (see [`Rule::bound`]).
    ///
    /// Saturates instead of overflowing, so an absurd `f` yields an unreachable bound rather
    /// than a panic.
    pub fn min_inputs(self, f: usize) -> usize {
        let twice = f.saturating_mul(2);
        match self {
            Rule::Average => 1,
            Rule::Median
            | Rule::TrimmedMean
            | Rule::GeometricMedian
            | Rule::Mda
            | Rule::CenteredClipping
            | Rule::Meamed => twice.saturating_add(1),
            Rule::Krum | Rule::MultiKrum => twice.saturating_add(3),
            Rule::Bulyan => f.saturating_mul(4).saturating_add(3),
        }
    }

    /// The human-readable form of [`Rule::min_inputs`], with its source.
    pub fn bound(self) -> &'static str {
        match self {
            Rule::Average => "n ≥ 1 (average is not Byzantine-robust: use f = 0)",
            Rule::Median => "n ≥ 2f + 1 (coordinate-wise median, honest majority)",
            Rule::TrimmedMean => "n ≥ 2f + 1 (trimmed mean keeps n − 2f values per coordinate)",
            Rule::Krum => "n ≥ 2f + 3 (Krum, Blanchard et al. 2017)",
            Rule::MultiKrum => "n ≥ 2f + 3 (Multi-Krum, El Mhamdi et al. 2018)",
            Rule::Bulyan => "n ≥ 4f + 3 (Bulyan, El Mhamdi et al. 2018)",
            Rule::GeometricMedian => "n ≥ 2f + 1 (geometric median, breakdown point 1/2)",
            Rule::Mda => "n ≥ 2f + 1 (MDA, ByzSGD PODC 2020)",
            Rule::CenteredClipping => "n ≥ 2f + 1 (centered clipping, honest majority)",
            Rule::Meamed => "n ≥ 2f + 1 (Meamed, Xie et al. 2018)",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Rule {
    type Err = GarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .into_iter()
            .find(|rule| rule.name() == s)
            .ok_or_else(|| GarError::UnknownRule { name: s.to_owned() })
    }
}

fn rule_names() -> String {
    Rule::ALL.map(Rule::name).join(", ")
}

/// A transformation applied to the inputs before the rule, in the order listed in
/// [`GarConfig::pre`]. Written on the command line as `nnm`, `bucketing:S` or `clip:C`; in
/// serde as `{kind: nnm}`, `{kind: bucketing, size: S}`, `{kind: norm-clip, maxNorm: C}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
#[cfg_attr(
    feature = "schema",
    schemars(transform = crate::schema::structural_tagged_union)
)]
pub enum PreAggregator {
    /// Nearest-neighbour mixing (Allouah et al., AISTATS 2023): each input is replaced by the
    /// mean of its `n − f` nearest inputs (itself included). Needs `n ≥ 2f + 1`.
    Nnm,
    /// Bucketing (Karimireddy, He, Jaggi, ICLR 2022): a seeded random permutation
    /// ([`GarConfig::seed`]) split into buckets of `size` inputs, each replaced by its mean, so
    /// the rule sees `⌈n / size⌉` inputs (still with up to `f` Byzantine ones).
    Bucketing {
        /// Inputs per bucket (≥ 1).
        size: usize,
    },
    /// Norm clipping: each input `x` becomes `x · min(1, max_norm / ‖x‖)`. Inputs with a
    /// non-finite norm are left as they are for the rule to reject.
    NormClip {
        /// The largest Euclidean norm let through (finite, > 0).
        max_norm: f32,
    },
}

impl fmt::Display for PreAggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreAggregator::Nnm => f.write_str("nnm"),
            PreAggregator::Bucketing { size } => write!(f, "bucketing:{size}"),
            PreAggregator::NormClip { max_norm } => write!(f, "clip:{max_norm}"),
        }
    }
}

impl FromStr for PreAggregator {
    type Err = GarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| GarError::InvalidPreAggregator {
            spec: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, argument) = match s.split_once(':') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (s, None),
        };
        let pre = match (kind, argument) {
            ("nnm", None) => PreAggregator::Nnm,
            ("bucketing", Some(size)) => PreAggregator::Bucketing {
                size: size
                    .parse()
                    .map_err(|_| invalid("the bucket size must be a positive integer"))?,
            },
            ("clip", Some(max_norm)) => PreAggregator::NormClip {
                max_norm: max_norm
                    .parse()
                    .map_err(|_| invalid("the clipping norm must be a number"))?,
            },
            ("nnm", Some(_)) => return Err(invalid("nnm takes no argument")),
            ("bucketing" | "clip", None) => return Err(invalid("missing the \":value\" part")),
            _ => return Err(invalid("unknown pre-aggregator")),
        };
        pre.validate()?;
        Ok(pre)
    }
}

impl PreAggregator {
    /// Smallest number of inputs this stage accepts for a declared `f`.
    fn min_inputs(self, f: usize) -> usize {
        match self {
            PreAggregator::Nnm => f.saturating_mul(2).saturating_add(1),
            PreAggregator::Bucketing { .. } | PreAggregator::NormClip { .. } => 1,
        }
    }

    /// Number of vectors this stage hands to the next one when given `n`.
    fn outputs(self, n: usize) -> usize {
        match self {
            PreAggregator::Bucketing { size } if size > 0 => n.div_ceil(size),
            _ => n,
        }
    }

    fn validate(self) -> Result<(), GarError> {
        match self {
            PreAggregator::Bucketing { size } if size == 0 => Err(GarError::InvalidParameter {
                name: "bucketing size",
                value: size.to_string(),
                expected: "a bucket size of at least 1",
            }),
            PreAggregator::NormClip { max_norm } if !(max_norm.is_finite() && max_norm > 0.0) => {
                Err(GarError::InvalidParameter {
                    name: "clipping norm",
                    value: max_norm.to_string(),
                    expected: "a finite clipping norm > 0",
                })
            }
            PreAggregator::Nnm
            | PreAggregator::Bucketing { .. }
            | PreAggregator::NormClip { .. } => Ok(()),
        }
    }
}

/// Everything [`aggregate`] needs besides the inputs: the rule, the declared `f`, optional
/// pre-aggregators and the rules' tuning parameters (defaults in [`GarConfig::new`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GarConfig {
    /// The rule.
    pub rule: Rule,
    /// Declared number of Byzantine inputs the rule must tolerate.
    pub f: usize,
    /// Multi-Krum only: how many inputs to average, `1 ≤ m ≤ n − f`; `None` means `n − f`
    /// (El Mhamdi et al. 2018). Ignored by other rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    /// Pre-aggregators applied in order before the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<PreAggregator>,
    /// Centered clipping: clipping radius τ (finite, > 0). Default 100, as in ByzFL.
    #[serde(default = "defaults::cc_tau")]
    pub cc_tau: f32,
    /// Centered clipping: number of clipping iterations L (≥ 1). Default 1, as in ByzFL.
    #[serde(default = "defaults::cc_iterations")]
    pub cc_iterations: usize,
    /// Geometric median: smoothing ν of the Weiszfeld weights `1 / max(ν, ‖z − xᵢ‖)` (finite,
    /// > 0). Default 0.1, as in ByzFL.
    #[serde(default = "defaults::gm_nu")]
    pub gm_nu: f32,
    /// Geometric median: number of Weiszfeld iterations (≥ 1). Default 3, as in ByzFL.
    #[serde(default = "defaults::gm_iterations")]
    pub gm_iterations: usize,
    /// Seed of the bucketing permutation; callers vary it per step to re-draw the buckets.
    #[serde(default)]
    pub seed: u64,
}

mod defaults {
    use super::GarConfig;

    pub(super) fn cc_tau() -> f32 {
        GarConfig::DEFAULT_CC_TAU
    }
    pub(super) fn cc_iterations() -> usize {
        GarConfig::DEFAULT_CC_ITERATIONS
    }
    pub(super) fn gm_nu() -> f32 {
        GarConfig::DEFAULT_GM_NU
    }
    pub(super) fn gm_iterations() -> usize {
        GarConfig::DEFAULT_GM_ITERATIONS
    }
}

impl GarConfig {
    /// Default centered-clipping radius τ (ByzFL's).
    pub const DEFAULT_CC_TAU: f32 = 100.0;
    /// Default number of centered-clipping iterations (ByzFL's).
    pub const DEFAULT_CC_ITERATIONS: usize = 1;
    /// Default Weiszfeld smoothing ν of the geometric median (ByzFL's).
    pub const DEFAULT_GM_NU: f32 = 0.1;
    /// Default number of Weiszfeld iterations of the geometric median (ByzFL's).
    pub const DEFAULT_GM_ITERATIONS: usize = 3;

    /// A configuration with no pre-aggregator and the default rule parameters.
    pub fn new(rule: Rule, f: usize) -> Self {
        Self {
            rule,
            f,
            m: None,
            pre: Vec::new(),
            cc_tau: Self::DEFAULT_CC_TAU,
            cc_iterations: Self::DEFAULT_CC_ITERATIONS,
            gm_nu: Self::DEFAULT_GM_NU,
            gm_iterations: Self::DEFAULT_GM_ITERATIONS,
            seed: 0,
        }
    }

    /// Checks the parameters and that `n` inputs satisfy every stage's bound (pre-aggregators
    /// first, then the rule on the number of vectors they hand over).
    pub fn check(&self, n: usize) -> Result<(), GarError> {
        if n == 0 {
            return Err(GarError::NoInputs);
        }
        self.check_parameters()?;
        let mut count = n;
        for &pre in &self.pre {
            pre.validate()?;
            let needed = pre.min_inputs(self.f);
            if count < needed {
                return Err(GarError::PreTooFewInputs {
                    pre,
                    n: count,
                    f: self.f,
                    needed,
                });
            }
            count = pre.outputs(count);
        }
        let needed = self.rule.min_inputs(self.f);
        if count < needed {
            return Err(GarError::TooFewInputs {
                rule: self.rule,
                n: count,
                f: self.f,
                needed,
                bound: self.rule.bound(),
            });
        }
        if self.rule == Rule::Mda && count > mda::MAX_INPUTS {
            return Err(GarError::TooManyInputs {
                rule: self.rule,
                n: count,
                max: mda::MAX_INPUTS,
            });
        }
        if self.rule == Rule::MultiKrum
            && let Some(m) = self.m
            && !(1..=count - self.f).contains(&m)
        {
            return Err(GarError::InvalidParameter {
                name: "m",
                value: m.to_string(),
                expected: "1 ≤ m ≤ n − f for Multi-Krum (omit m for n − f)",
            });
        }
        Ok(())
    }

    fn check_parameters(&self) -> Result<(), GarError> {
        if !(self.cc_tau.is_finite() && self.cc_tau > 0.0) {
            return Err(GarError::InvalidParameter {
                name: "centered-clipping tau",
                value: self.cc_tau.to_string(),
                expected: "a finite clipping radius > 0",
            });
        }
        if self.cc_iterations == 0 {
            return Err(GarError::InvalidParameter {
                name: "centered-clipping iterations",
                value: "0".to_owned(),
                expected: "at least 1 iteration",
            });
        }
        if !(self.gm_nu.is_finite() && self.gm_nu > 0.0) {
            return Err(GarError::InvalidParameter {
                name: "geometric-median nu",
                value: self.gm_nu.to_string(),
                expected: "a finite smoothing > 0",
            });
        }
        if self.gm_iterations == 0 {
            return Err(GarError::InvalidParameter {
                name: "geometric-median iterations",
                value: "0".to_owned(),
                expected: "at least 1 iteration",
            });
        }
        Ok(())
    }
}

/// The result of [`aggregate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    /// The aggregate vector.
    pub value: Array1<f32>,
    /// Sorted indices of the inputs the rule kept: the chosen inputs for Krum, Multi-Krum, Bulyan
    /// and MDA; every input for the coordinate-wise and weighting rules (except, for the
    /// geometric median and centered clipping, inputs whose distance to the estimate is not
    /// finite, which get no weight). With pre-aggregators, indices refer to the original inputs
    /// (a bucket stands for all its members). The complement is what the metric
    /// `byzsgd_excluded_total` counts.
    pub selected: Vec<usize>,
}

impl Aggregation {
    /// Indices of the inputs the rule left out (the complement of `selected` in `0..n`).
    pub fn excluded(&self, n: usize) -> Vec<usize> {
        let mut selected = self.selected.iter().peekable();
        (0..n)
            .filter(|index| {
                if selected.peek() == Some(&index) {
                    selected.next();
                    false
                } else {
                    true
                }
            })
            .collect()
    }
}

/// Why an aggregation could not be computed. Every message names the bad input and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GarError {
    /// No input vectors at all.
    #[error("no inputs to aggregate: give at least one vector")]
    NoInputs,
    /// Fewer inputs than the rule's bound for the declared `f`.
    #[error(
        "{rule} needs at least {needed} inputs for f = {f} but got n = {n}: the bound is {bound}; \
         lower f or aggregate more inputs"
    )]
    TooFewInputs {
        /// The rule.
        rule: Rule,
        /// Inputs given to the rule (after pre-aggregation).
        n: usize,
        /// Declared number of Byzantine inputs.
        f: usize,
        /// [`Rule::min_inputs`] for this `f`.
        needed: usize,
        /// [`Rule::bound`].
        bound: &'static str,
    },
    /// Fewer inputs than a pre-aggregator needs for the declared `f`.
    #[error(
        "pre-aggregator {pre} needs at least {needed} inputs for f = {f} but got n = {n}; \
         lower f, aggregate more inputs or drop the pre-aggregator"
    )]
    PreTooFewInputs {
        /// The pre-aggregator.
        pre: PreAggregator,
        /// Inputs given to it.
        n: usize,
        /// Declared number of Byzantine inputs.
        f: usize,
        /// Inputs it needs.
        needed: usize,
    },
    /// More inputs than the rule supports.
    #[error(
        "{rule} supports at most {max} inputs but got n = {n}; aggregate fewer inputs or use another rule"
    )]
    TooManyInputs {
        /// The rule.
        rule: Rule,
        /// Inputs given.
        n: usize,
        /// The largest supported `n`.
        max: usize,
    },
    /// Inputs of different lengths.
    #[error(
        "input {index} has dimension {found} but input 0 has dimension {expected}; \
         all inputs must have the same length"
    )]
    DimensionMismatch {
        /// Index of the first input whose length differs from input 0's.
        index: usize,
        /// Length of input 0.
        expected: usize,
        /// Length of input `index`.
        found: usize,
    },
    /// A rule or pre-aggregator parameter out of range.
    #[error("invalid {name} {value}: expected {expected}")]
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// Too many non-finite (or overflowing) inputs for a distance-based rule to choose inputs
    /// with finite distances.
    #[error(
        "{rule} found no choice of inputs with finite pairwise distances among n = {n}: more \
         than f = {f} inputs are non-finite or too large; raise f or drop those inputs"
    )]
    NoFiniteChoice {
        /// The rule.
        rule: Rule,
        /// Inputs given to the rule.
        n: usize,
        /// Declared number of Byzantine inputs.
        f: usize,
    },
    /// A rule name that is not one of [`Rule::ALL`].
    #[error("unknown rule {name:?}; valid rules: {}", rule_names())]
    UnknownRule {
        /// The name given.
        name: String,
    },
    /// A pre-aggregator spec that does not parse.
    #[error(
        "invalid pre-aggregator {spec:?}: {reason}; expected nnm, bucketing:SIZE or clip:MAX_NORM"
    )]
    InvalidPreAggregator {
        /// The spec given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Aggregates `inputs` (one vector each, all the same length) with `config`.
///
/// Runs the pre-aggregators in order, then the rule. Errors (never panics) when `inputs` is
/// empty or ragged, a parameter is out of range, `n` is below a bound, or (distance-based rules)
/// more than `f` inputs are non-finite. Rows need not be contiguous with each other; strided rows
/// are copied once.
pub fn aggregate(
    config: &GarConfig,
    inputs: &[ArrayView1<'_, f32>],
) -> Result<Aggregation, GarError> {
    let rows = Rows::new(inputs)?;
    config.check(rows.len())?;
    if config.pre.is_empty() {
        return apply_rule(config, &rows);
    }
    let (mixed, groups) = pre::apply_all(config, &rows);
    let mixed_rows = Rows::from_owned(&mixed);
    let inner = apply_rule(config, &mixed_rows)?;
    let mut selected: Vec<usize> = inner
        .selected
        .iter()
        .flat_map(|&group| groups[group].iter().copied())
        .collect();
    selected.sort_unstable();
    selected.dedup();
    Ok(Aggregation {
        value: inner.value,
        selected,
    })
}

/// Runs the rule alone on already validated rows.
fn apply_rule(config: &GarConfig, rows: &Rows<'_>) -> Result<Aggregation, GarError> {
    let f = config.f;
    let all = || (0..rows.len()).collect::<Vec<_>>();
    let (value, selected) = match config.rule {
        Rule::Average => (average::mean(rows), all()),
        Rule::Median => (median::median(rows), all()),
        Rule::TrimmedMean => (trimmed_mean::trimmed_mean(rows, f), all()),
        Rule::Krum => krum::multi_krum(rows, f, 1, Rule::Krum)?,
        Rule::MultiKrum => {
            let m = config.m.unwrap_or(rows.len() - f);
            krum::multi_krum(rows, f, m, Rule::MultiKrum)?
        }
        Rule::Bulyan => bulyan::bulyan(rows, f)?,
        Rule::GeometricMedian => {
            geometric_median::geometric_median(rows, config.gm_nu, config.gm_iterations)
        }
        Rule::Mda => mda::mda(rows, f)?,
        Rule::CenteredClipping => {
            centered_clipping::centered_clipping(rows, config.cc_tau, config.cc_iterations)
        }
        Rule::Meamed => (meamed::meamed(rows, f), all()),
    };
    Ok(Aggregation { value, selected })
}
