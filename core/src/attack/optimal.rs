//! The adaptive ("optimal") scaling attacks: the f Byzantine workers send one vector from a
//! family with a scale — inner-product manipulation −τ·μ (Xie, Koyejo, Gupta 2019) or
//! "a little is enough" μ − τ·σ (Baruch et al. 2019) — and choose τ at every step by a line
//! search that maximises how far the aggregate of the rule in use lands from the honest mean,
//! ‖GAR(honest ∪ f × v(τ)) − μ‖. ByzFL ships the same idea as `Optimal_InnerProductManipulation`
//! and `Optimal_ALittleIsEnough` (20 evaluations, start 0, first step 10, shrink ratio 0.8;
//! ANCHORS.md §3.1); the search below is this project's own pattern search with those
//! settings: move by the step while the objective grows, otherwise reverse and shrink it.
//!
//! Unlike every other worker attack these know the aggregation rule (the omniscient adversary
//! of the paper knows the protocol). Without one they attack plain averaging. Pure; no I/O.

use ndarray::{Array1, ArrayView1, Zip};

use super::math::{mean, std_dev};
use crate::gar::{self, GarConfig, Rule};

/// The search's budget and steps (ByzFL's defaults for its optimal attacks).
const EVALUATIONS: usize = 20;
const START: f64 = 0.0;
const FIRST_STEP: f64 = 10.0;
const SHRINK: f64 = 0.8;
/// At most this many correct and this many Byzantine inputs per evaluation: `craft` never
/// fails, so an n or f no job can have (validation bounds them far lower) is clamped rather
/// than allocated.
const MAX_INPUTS: usize = 1024;

/// Which family of vectors the scale τ parametrises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// −τ·μ: inner-product manipulation (fall of empires).
    InnerProduct,
    /// μ − τ·σ, coordinate-wise: a little is enough.
    LittleIsEnough,
}

/// The maximiser of `objective` over τ ≥ 0 found with [`EVALUATIONS`] evaluations: start at
/// [`START`]; try τ + step; keep it if the objective grew, else reverse the step and shrink
/// it by [`SHRINK`]. Non-finite objective values never win.
pub(crate) fn line_search(mut objective: impl FnMut(f64) -> f64) -> f64 {
    let finite_or_worst = |value: f64| if value.is_finite() { value } else { f64::MIN };
    let (mut best_tau, mut best) = (START, finite_or_worst(objective(START)));
    let mut step = FIRST_STEP;
    for _ in 1..EVALUATIONS {
        let tau = (best_tau + step).max(0.0);
        let value = finite_or_worst(objective(tau));
        if value > best {
            (best_tau, best) = (tau, value);
        } else {
            step = -step * SHRINK;
        }
    }
    best_tau
}

/// The vector the Byzantine workers send: `family` at the τ that moves `rule`'s aggregate of
/// the honest vectors plus `f` copies of it farthest from the honest mean. `honest` is what the
/// attacker sees (non-empty, equally long); it is repeated cyclically up to n − f inputs, so the
/// rule sees the input count it is configured for. A rule that refuses the inputs (n below its
/// bound) scores 0 for that τ.
pub(crate) fn craft(
    honest: &[ArrayView1<'_, f32>],
    family: Family,
    n: usize,
    f: usize,
    rule: Option<&GarConfig>,
) -> Array1<f32> {
    let mu = mean(honest);
    let direction = match family {
        Family::InnerProduct => mu.mapv(|m| -m),
        Family::LittleIsEnough => std_dev(honest, &mu).mapv(|s| -s),
    };
    let base = match family {
        Family::InnerProduct => Array1::zeros(mu.len()),
        Family::LittleIsEnough => mu.clone(),
    };
    let vector = |tau: f64| -> Array1<f32> {
        Zip::from(&base)
            .and(&direction)
            .map_collect(|&b, &d| (b + tau * d) as f32)
    };
    let averaging = GarConfig::new(Rule::Average, f.min(MAX_INPUTS));
    let rule = rule.unwrap_or(&averaging);
    let correct = n.saturating_sub(f).clamp(1, MAX_INPUTS);
    let f = f.min(MAX_INPUTS);
    let objective = |tau: f64| {
        let lie = vector(tau);
        let inputs: Vec<ArrayView1<'_, f32>> = honest
            .iter()
            .cycle()
            .take(correct)
            .copied()
            .chain(std::iter::repeat_n(lie.view(), f))
            .collect();
        match gar::aggregate(rule, &inputs) {
            Ok(aggregation) => Zip::from(&aggregation.value)
                .and(&mu)
                .fold(0.0, |acc, &a, &m| acc + (f64::from(a) - m).powi(2))
                .sqrt(),
            Err(_) => 0.0,
        }
    };
    vector(line_search(objective))
}

#[cfg(test)]
// Exact values: the search returns its start unchanged, and the median picks an input.
#[allow(clippy::float_cmp)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn the_search_climbs_to_the_maximum_of_a_concave_objective() {
        // −(τ − 7)²: the first step (10) overshoots, later ones shrink back towards 7.
        let tau = line_search(|tau| -(tau - 7.0).powi(2));
        assert!((tau - 7.0).abs() < 1.0, "τ = {tau}");
        // Monotone: every step forward is kept.
        assert!(line_search(|tau| tau) >= 10.0 * 5.0);
        // Nothing beats τ = 0: it stays there.
        assert_eq!(line_search(|tau| -tau), 0.0);
        // NaN never wins.
        assert_eq!(
            line_search(|tau| if tau > 0.0 { f64::NAN } else { 1.0 }),
            0.0
        );
    }

    #[test]
    fn against_averaging_inner_product_manipulation_scales_up() {
        // Averaging: the aggregate moves linearly with τ, so the search goes as far as its
        // budget lets it; the vector points against the honest mean (1, 1).
        let honest = [array![1.0_f32, 1.0], array![1.0, 1.0], array![1.0, 1.0]];
        let views: Vec<_> = honest.iter().map(|v| v.view()).collect();
        let v = craft(&views, Family::InnerProduct, 5, 2, None);
        assert!(v[0] < -10.0 && (v[0] - v[1]).abs() < 1e-6, "{v}");
    }

    #[test]
    fn against_the_median_the_scale_stops_where_the_median_stops_moving() {
        // Coordinate-wise median of 3 honest (0, 1, 2) + 2 copies of −τ·1: for any τ > 0 the
        // median is 0 (two lies below, three honest), 1 unit from μ = 1; bigger τ gains
        // nothing, so the search keeps the first τ that reached it.
        let honest = [array![0.0_f32], array![1.0], array![2.0]];
        let views: Vec<_> = honest.iter().map(|v| v.view()).collect();
        let rule = GarConfig::new(Rule::Median, 2);
        let v = craft(&views, Family::InnerProduct, 5, 2, Some(&rule));
        assert!(v[0] <= 0.0, "{v}");
        let aggregate =
            gar::aggregate(&rule, &[views[0], views[1], views[2], v.view(), v.view()]).unwrap();
        assert_eq!(aggregate.value[0], 0.0);
    }

    #[test]
    fn little_is_enough_moves_along_minus_sigma() {
        let honest = [array![0.0_f32, 5.0], array![2.0, 5.0]];
        let views: Vec<_> = honest.iter().map(|v| v.view()).collect();
        let v = craft(&views, Family::LittleIsEnough, 5, 2, None);
        // σ = (1, 0): only the first coordinate moves, below μ = (1, 5).
        assert!(v[0] < 1.0, "{v}");
        assert_eq!(v[1], 5.0);
    }
}
