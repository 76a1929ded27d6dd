//! Centered clipping (Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
//! Optimization", ICML 2021, eq. (CC)): starting from v, repeat L times
//! v ← v + (1/n) Σᵢ (xᵢ − v) · min(1, τ / ‖xᵢ − v‖).
//!
//! The paper starts from the previous aggregate (momentum); ByzFL starts from zero. This rule is
//! stateless, so it starts from the coordinate-wise median, which keeps the result robust
//! whatever τ is: each Byzantine input moves v by at most τ/n per iteration. Repeated to
//! convergence, the iteration reaches the same fixed point from any start. Inputs at a
//! non-finite (or overflowing) distance from v contribute nothing (as if clipped to length 0)
//! and are reported as not selected.
//!
//! Bound `n ≥ 2f + 1` (honest majority; the paper analyses f/n ≤ 0.1); cost O(n·d) per
//! iteration plus one median.

use ndarray::Array1;

use super::{distances::sq_distances_to, median, rows::Rows};

/// Coordinates updated at a time, so the estimate's block stays in L1 while the rows stream.
const BLOCK: usize = 4096;

/// Centered clipping of validated rows with radius `tau` and `iterations` rounds, with the
/// indices that contributed in the last round.
pub(crate) fn centered_clipping(
    rows: &Rows<'_>,
    tau: f32,
    iterations: usize,
) -> (Array1<f32>, Vec<usize>) {
    let n = rows.len();
    let mut estimate = median::median(rows).to_vec();
    let mut used: Vec<usize> = (0..n).collect();
    for _ in 0..iterations {
        let mut indices = Vec::with_capacity(n);
        let mut coefficients = Vec::with_capacity(n);
        for (index, squared) in sq_distances_to(rows, Some(&estimate))
            .into_iter()
            .enumerate()
        {
            let distance = squared.sqrt();
            if distance.is_finite() {
                let scale = if distance > f64::from(tau) {
                    f64::from(tau) / distance
                } else {
                    1.0
                };
                indices.push(index);
                coefficients.push((scale / n as f64) as f32);
            }
        }
        let mut next = estimate.clone();
        for (start, target) in (0..).step_by(BLOCK).zip(next.chunks_mut(BLOCK)) {
            let center = &estimate[start..start + target.len()];
            for (&index, &coefficient) in indices.iter().zip(&coefficients) {
                let row = &rows.row(index)[start..start + target.len()];
                for ((slot, &x), &c) in target.iter_mut().zip(row).zip(center) {
                    *slot += coefficient * (x - c);
                }
            }
        }
        estimate = next;
        used = indices;
    }
    (Array1::from_vec(estimate), used)
}
