//! The "AGR-agnostic" optimisation attacks of Shejwalkar and Houmansadr ("Manipulating the
//! Byzantine: optimizing model poisoning attacks and defenses for federated learning", NDSS
//! 2021): min-max and min-sum. Both send m = μ − λ·u, where μ is the mean of the honest
//! gradients and u = μ/‖μ‖ (their default perturbation, `unit_vec`), with the largest λ whose m
//! still looks like an honest gradient to a distance-based rule:
//!
//! - **min-max**: the farthest honest gradient from m is no farther than the two farthest
//!   honest gradients are from each other, max_i ‖m − g_i‖² ≤ max_ij ‖g_i − g_j‖² — so m is
//!   inside the honest set's diameter, which is what MDA and Krum look at;
//! - **min-sum**: m's summed squared distance to the honest gradients is no larger than the
//!   smallest such sum of an honest gradient, Σ_i ‖m − g_i‖² ≤ min_j Σ_i ‖g_j − g_i‖².
//!
//! λ is found by their search: start at 10, step 10, and halve the step each round, moving up
//! after a λ that passes and down after one that fails, until the last passing λ and the
//! current one are within 10⁻⁵; m uses the last passing λ (0 if none passed: then m = μ).
//! They need no knowledge of the rule in use, only of the honest gradients (the omniscient
//! adversary of ByzSGD's analysis). Pure; no I/O.

use ndarray::{Array1, ArrayView1, Zip};

use super::math::mean;

/// Which acceptance test λ must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Criterion {
    /// max_i ‖m − g_i‖² ≤ max_ij ‖g_i − g_j‖².
    MinMax,
    /// Σ_i ‖m − g_i‖² ≤ min_j Σ_i ‖g_j − g_i‖².
    MinSum,
}

/// The search's starting λ and its stopping gap (Shejwalkar and Houmansadr's code).
const LAMBDA_START: f64 = 10.0;
const LAMBDA_TOLERANCE: f64 = 1e-5;

fn squared_distance(a: &ArrayView1<'_, f64>, b: &ArrayView1<'_, f32>) -> f64 {
    Zip::from(a)
        .and(b)
        .fold(0.0, |acc, &x, &y| acc + (x - f64::from(y)).powi(2))
}

/// The vector min-max or min-sum sends, given the honest gradients the attacker sees
/// (non-empty, equally long). Non-finite inputs give a non-finite m, as any mean would.
pub(crate) fn craft(honest: &[ArrayView1<'_, f32>], criterion: Criterion) -> Array1<f32> {
    let mu = mean(honest);
    let norm = mu.dot(&mu).sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        // No direction to push against (or nothing finite to push): send the mean.
        return mu.mapv(|x| x as f32);
    }
    let unit = &mu / norm;
    // The bound m must stay within, from the honest gradients alone.
    let pairwise: Vec<Vec<f64>> = honest
        .iter()
        .map(|a| {
            let a = a.mapv(f64::from);
            honest
                .iter()
                .map(|b| squared_distance(&a.view(), b))
                .collect()
        })
        .collect();
    let bound = match criterion {
        Criterion::MinMax => pairwise.iter().flatten().copied().fold(0.0, f64::max),
        Criterion::MinSum => pairwise
            .iter()
            .map(|row| row.iter().sum::<f64>())
            .fold(f64::INFINITY, f64::min),
    };
    let candidate = |lambda: f64| &mu - &(&unit * lambda);
    let accepted = |lambda: f64| {
        let m = candidate(lambda);
        let distances = honest.iter().map(|g| squared_distance(&m.view(), g));
        let score = match criterion {
            Criterion::MinMax => distances.fold(0.0, f64::max),
            Criterion::MinSum => distances.sum(),
        };
        score <= bound
    };
    let (mut lambda, mut step, mut passed) = (LAMBDA_START, LAMBDA_START, 0.0_f64);
    while (passed - lambda).abs() > LAMBDA_TOLERANCE {
        if accepted(lambda) {
            passed = lambda;
            lambda += step / 2.0;
        } else {
            lambda -= step / 2.0;
        }
        step /= 2.0;
    }
    candidate(passed).mapv(|x| x as f32)
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    /// g = (2, 0), (0, 2), (0, 0): μ = (2/3, 2/3), u = (1, 1)/√2, so m = (a, a) with
    /// a = 2/3 − λ/√2. Min-max: the farthest honest gradient from m is (2, 0) or (0, 2) at
    /// 2a² − 4a + 4, which must stay ≤ 8 = ‖(2, 0) − (0, 2)‖²: a ≥ 1 − √3. Min-sum: the sum
    /// 6a² − 8a + 8 must stay ≤ 8 (the sum of (0, 0)): a ≥ 0.
    #[test]
    fn min_max_and_min_sum_push_as_far_as_their_bound_allows() {
        let honest = [array![2.0_f32, 0.0], array![0.0, 2.0], array![0.0, 0.0]];
        let views: Vec<_> = honest.iter().map(|v| v.view()).collect();
        let min_max = craft(&views, Criterion::MinMax);
        let a = 1.0 - 3.0_f32.sqrt();
        assert!(
            (min_max[0] - a).abs() < 1e-4 && (min_max[1] - a).abs() < 1e-4,
            "{min_max}"
        );
        let min_sum = craft(&views, Criterion::MinSum);
        assert!(
            min_sum[0].abs() < 1e-4 && min_sum[1].abs() < 1e-4,
            "{min_sum}"
        );
    }

    #[test]
    fn a_zero_mean_leaves_no_direction_and_the_mean_is_sent() {
        let honest = [array![1.0_f32, -1.0], array![-1.0, 1.0]];
        let views: Vec<_> = honest.iter().map(|v| v.view()).collect();
        assert_eq!(craft(&views, Criterion::MinMax), array![0.0, 0.0]);
    }
}
