//! Arithmetic mean, the vanilla-SGD baseline, plus the blocked (weighted) sums of chosen rows
//! that Multi-Krum, MDA, the geometric median and the pre-aggregators reuse.
//!
//! Not Byzantine-robust: one input moves the mean arbitrarily far. Bound `n ≥ 1`; cost O(n·d),
//! one pass over the inputs.

use ndarray::Array1;

use super::rows::Rows;

/// Coordinates accumulated at a time: the accumulator (16 KiB) stays in L1 while every row
/// streams through it once, so the output is written once instead of once per row.
const BLOCK: usize = 4096;

/// Mean of all rows.
pub(crate) fn mean(rows: &Rows<'_>) -> Array1<f32> {
    let all: Vec<usize> = (0..rows.len()).collect();
    mean_of(rows, &all)
}

/// Mean of the rows listed in `indices` (non-empty, each `< n`).
pub(crate) fn mean_of(rows: &Rows<'_>, indices: &[usize]) -> Array1<f32> {
    // Summing first and scaling once keeps the mean of k copies of x as close to x as f32
    // allows.
    let scale = 1.0 / indices.len() as f32;
    blocked(rows.dim(), |start, end, target| {
        for &index in indices {
            for (slot, &x) in target.iter_mut().zip(&rows.row(index)[start..end]) {
                *slot += x;
            }
        }
        for slot in target.iter_mut() {
            *slot *= scale;
        }
    })
}

/// `Σₖ weights[k] · row(indices[k])`. Callers leave out rows of weight 0, since `0 · ∞` is NaN.
pub(crate) fn weighted_sum(rows: &Rows<'_>, indices: &[usize], weights: &[f32]) -> Array1<f32> {
    blocked(rows.dim(), |start, end, target| {
        for (&index, &weight) in indices.iter().zip(weights) {
            for (slot, &x) in target.iter_mut().zip(&rows.row(index)[start..end]) {
                *slot += weight * x;
            }
        }
    })
}

/// Builds a `dim`-vector block by block: `fill(start, end, target)` receives the zeroed output
/// slice for coordinates `start..end`.
fn blocked(dim: usize, mut fill: impl FnMut(usize, usize, &mut [f32])) -> Array1<f32> {
    let mut out = vec![0.0f32; dim];
    let mut start = 0;
    while start < dim {
        let end = dim.min(start + BLOCK);
        fill(start, end, &mut out[start..end]);
        start = end;
    }
    Array1::from_vec(out)
}
