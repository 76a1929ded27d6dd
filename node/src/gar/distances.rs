//! Pairwise squared Euclidean distances, shared by Krum, Multi-Krum, Bulyan, MDA and NNM.
//!
//! Computed through the Gram matrix, ‖xᵢ − xⱼ‖² = ‖xᵢ‖² + ‖xⱼ‖² − 2⟨xᵢ, xⱼ⟩, so the O(n²·d) work
//! is one matrix product (`ndarray`'s `dot`, i.e. matrixmultiply's SIMD sgemm) rather than n²/2
//! separate passes over the data. The coordinates are processed in blocks: each block of the
//! `n` rows is packed into one contiguous `n × B` matrix (rows need not be contiguous with each
//! other), multiplied in `f32`, and the block's Gram matrix is accumulated in `f64`, so the
//! rounding error grows with the block size B rather than with d.
//!
//! Accuracy: the error on a squared distance is about ε_f32 · √B · (‖xᵢ‖² + ‖xⱼ‖²), relative to
//! the norms rather than to the distance; inputs much closer to each other than to the origin
//! lose relative precision (rank decisions between nearly tied distances may then differ from
//! an exact computation). Negative results of cancellation are clamped to 0.
//!
//! Non-finite handling: a NaN, an infinity, or a product that overflows `f32` makes the affected
//! distances non-finite; they are all reported as +∞ so callers can order them. Entries of other
//! pairs are unaffected (each Gram entry depends only on its two rows).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, Axis, Slice};

use super::GarError;
use super::rows::Rows;

/// Coordinates per block: the packed block (n · B · 4 bytes, 152 KiB for n = 19) stays in L2
/// while the product runs, and `f32` accumulation over B terms stays accurate.
const BLOCK: usize = 2048;

/// The `n × n` matrix of squared Euclidean distances between `inputs`, in `f64`, symmetric with
/// a zero diagonal; non-finite (or overflowing) distances are +∞. Errors on empty or ragged
/// inputs.
pub fn pairwise_sq_distances(inputs: &[ArrayView1<'_, f32>]) -> Result<Array2<f64>, GarError> {
    Ok(sq_distances(&Rows::new(inputs)?))
}

/// [`pairwise_sq_distances`] of validated rows.
pub(crate) fn sq_distances(rows: &Rows<'_>) -> Array2<f64> {
    let n = rows.len();
    let dim = rows.dim();
    let block = BLOCK.min(dim).max(1);
    let mut packed = Array2::<f32>::zeros((n, block));
    let mut block_gram = Array2::<f32>::zeros((n, n));
    let mut gram = Array2::<f64>::zeros((n, n));
    let mut start = 0;
    while start < dim {
        let end = dim.min(start + block);
        let width = end - start;
        for (mut target, row) in packed.rows_mut().into_iter().zip(rows.iter()) {
            for (slot, &x) in target.iter_mut().zip(&row[start..end]) {
                *slot = x;
            }
        }
        let block_rows = packed.slice_axis(Axis(1), Slice::from(..width));
        general_mat_mul(1.0, &block_rows, &block_rows.t(), 0.0, &mut block_gram);
        for (total, &part) in gram.iter_mut().zip(block_gram.iter()) {
            *total += f64::from(part);
        }
        start = end;
    }
    Array2::from_shape_fn((n, n), |(i, j)| {
        if i == j {
            return 0.0;
        }
        // Read one triangle only, so the result is exactly symmetric even if the product's
        // two triangles differ in the last bit.
        let cross = gram[[i.min(j), i.max(j)]];
        let squared = gram[[i, i]] + gram[[j, j]] - 2.0 * cross;
        if squared.is_finite() {
            squared.max(0.0)
        } else {
            f64::INFINITY
        }
    })
}

/// Squared Euclidean distance between two equal-length slices, accumulated in `f32` lanes per
/// block and in `f64` across blocks. Non-finite results (NaN, ∞, overflow) are +∞.
pub(crate) fn sq_distance(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 16;
    const BLOCK: usize = 1024;
    let mut total = 0.0f64;
    for (block_a, block_b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut lanes = [0.0f32; LANES];
        let mut chunks_a = block_a.chunks_exact(LANES);
        let mut chunks_b = block_b.chunks_exact(LANES);
        for (chunk_a, chunk_b) in chunks_a.by_ref().zip(chunks_b.by_ref()) {
            for k in 0..LANES {
                let difference = chunk_a[k] - chunk_b[k];
                lanes[k] += difference * difference;
            }
        }
        let mut block_total: f64 = lanes.iter().map(|&lane| f64::from(lane)).sum();
        for (&x, &y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
            let difference = f64::from(x) - f64::from(y);
            block_total += difference * difference;
        }
        total += block_total;
    }
    if total.is_finite() {
        total
    } else {
        f64::INFINITY
    }
}
