//! Smoothed geometric median by Weiszfeld iterations (Pillutla, Kakade, Harchaoui, "Robust
//! Aggregation for Federated Learning", IEEE TSP 2022, Algorithm 2 "smoothed Weiszfeld").
//!
//! The geometric median minimizes Σᵢ ‖z − xᵢ‖. Each iteration re-weights the inputs by
//! wᵢ = 1 / max(ν, ‖z − xᵢ‖) and sets z to their weighted mean; ν > 0 keeps the weights bounded
//! when z meets an input. ByzFL uses the same weights (ν = 0.1, 3 iterations by default) but
//! starts from zero; here z starts at the coordinate-wise median, a robust point, so a few
//! iterations already land near the geometric median even when a Byzantine input is huge.
//! Inputs at a non-finite (or overflowing) distance from z get weight 0 and are reported as not
//! selected.
//!
//! Bound `n ≥ 2f + 1` (breakdown point 1/2); cost O(n·d) per iteration plus one median.

use ndarray::Array1;

use super::{average, distances::sq_distances_to, median, rows::Rows};

/// The smoothed geometric median of validated rows, with the indices that got a weight in the
/// last iteration.
pub(crate) fn geometric_median(
    rows: &Rows<'_>,
    nu: f32,
    iterations: usize,
) -> (Array1<f32>, Vec<usize>) {
    let mut estimate = median::median(rows);
    let mut used: Vec<usize> = (0..rows.len()).collect();
    for _ in 0..iterations {
        let Some(center) = estimate.as_slice() else {
            break;
        };
        let mut indices = Vec::with_capacity(rows.len());
        let mut weights = Vec::with_capacity(rows.len());
        for (index, squared) in sq_distances_to(rows, Some(center)).into_iter().enumerate() {
            let distance = squared.sqrt();
            if distance.is_finite() {
                indices.push(index);
                weights.push(1.0 / distance.max(f64::from(nu)));
            }
        }
        if indices.is_empty() {
            break;
        }
        let total: f64 = weights.iter().sum();
        let normalized: Vec<f32> = weights.iter().map(|&w| (w / total) as f32).collect();
        estimate = average::weighted_sum(rows, &indices, &normalized);
        used = indices;
    }
    (estimate, used)
}
