//! Pairwise squared Euclidean distances, shared by Krum, Multi-Krum, Bulyan, MDA and NNM.
//!
//! Computed through the Gram matrix, ‖xᵢ − xⱼ‖² = ‖xᵢ‖² + ‖xⱼ‖² − 2⟨xᵢ, xⱼ⟩, so the O(n²·d) work
//! is n(n + 1)/2 dot products, one fused multiply-add per pair and coordinate, instead of a
//! subtraction and a multiply-add per pair and coordinate.
//!
//! The kernel reads the rows in place (they need not be contiguous with each other) in blocks of
//! coordinates that stay in the L1/L2 caches, and computes 4 × 4 tiles of the upper triangle with
//! 16 SIMD accumulators held in registers, so each loaded vector feeds four multiply-adds. Each
//! block's partial dot products (at most 64 terms per lane, in `f32`) are added into an `f64`
//! Gram matrix, so rounding does not grow with d. It runs with AVX-512 or AVX2 + FMA when the CPU
//! has them (pulp's safe run-time dispatch); otherwise the product goes through `ndarray`'s `dot`
//! (matrixmultiply) on packed blocks.
//!
//! Accuracy: the error on a squared distance is about ε_f32 · 8 · (‖xᵢ‖² + ‖xⱼ‖²), relative to
//! the norms rather than to the distance; inputs much closer to each other than to the origin
//! lose relative precision, and rank decisions between nearly tied distances may then differ
//! from an exact computation. Negative results of cancellation are clamped to 0.
//!
//! Non-finite handling: a NaN, an infinity, or a product that overflows `f32` makes the affected
//! distances non-finite; they are all reported as +∞ so callers can order them. Entries of other
//! pairs are unaffected (each Gram entry depends only on its two rows).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, Axis, Slice};
use pulp::{Arch, Simd, WithSimd};

use super::GarError;
use super::rows::Rows;

/// Rows per side of a register tile: 16 accumulators plus 8 loaded vectors fit the 32 AVX-512
/// registers (AVX2 has 16 and spills a little).
const TILE: usize = 4;

/// SIMD vectors per block and row: 4 KiB per row with AVX-512, so a block of up to 31 rows stays
/// in L2 while every tile reads it, and each `f32` lane sums at most 64 terms before the block's
/// sums go into the `f64` Gram matrix.
const BLOCK_VECTORS: usize = 512;

/// SIMD vectors touched at the start of each row's next block to start its prefetch.
const TOUCH_VECTORS: usize = 3;

/// Coordinates per block on the fallback path: the packed block (n · B · 4 bytes, 152 KiB for
/// n = 19) stays in L2 while the product runs.
const FALLBACK_BLOCK: usize = 2048;

/// The `n × n` matrix of squared Euclidean distances between `inputs`, in `f64`, symmetric with
/// a zero diagonal; non-finite (or overflowing) distances are +∞. Errors on empty or ragged
/// inputs.
pub fn pairwise_sq_distances(inputs: &[ArrayView1<'_, f32>]) -> Result<Array2<f64>, GarError> {
    Ok(sq_distances(&Rows::new(inputs)?))
}

/// [`pairwise_sq_distances`] of validated rows.
pub(crate) fn sq_distances(rows: &Rows<'_>) -> Array2<f64> {
    let n = rows.len();
    let mut gram = Array2::<f64>::zeros((n, n));
    Arch::new().dispatch(GramKernel {
        rows,
        gram: &mut gram,
    });
    Array2::from_shape_fn((n, n), |(i, j)| {
        if i == j {
            return 0.0;
        }
        // Only the upper triangle is computed.
        let cross = gram[[i.min(j), i.max(j)]];
        let squared = gram[[i, i]] + gram[[j, j]] - 2.0 * cross;
        if squared.is_finite() {
            squared.max(0.0)
        } else {
            f64::INFINITY
        }
    })
}

/// Accumulates the upper triangle (diagonal included) of the rows' Gram matrix into `gram`.
struct GramKernel<'k, 'a> {
    rows: &'k Rows<'a>,
    gram: &'k mut Array2<f64>,
}

impl WithSimd for GramKernel<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { rows, gram } = self;
        if S::F32_LANES < 4 {
            return gram_by_matrix_product(rows, gram);
        }
        let n = rows.len();
        let lanes = S::F32_LANES;
        let whole = rows.dim() / lanes * lanes;
        let vectors: Vec<&[S::f32s]> = rows
            .iter()
            .map(|row| S::as_simd_f32s(&row[..whole]).0)
            .collect();
        let count = whole / lanes;
        let mut touched = simd.splat_f32s(0.0);
        let mut start = 0;
        while start < count {
            let len = BLOCK_VECTORS.min(count - start);
            // Touch the first lines of every row's next block: the hardware prefetcher then
            // streams the rest of those pages in while this block is being multiplied (a
            // software prefetch in safe code: the values only feed `touched`, kept alive below).
            let next = start + len;
            for row in &vectors {
                for &x in row
                    .get(next..count.min(next + TOUCH_VECTORS))
                    .unwrap_or(&[])
                {
                    touched = simd.add_f32s(touched, x);
                }
            }
            let block: Vec<&[S::f32s]> =
                vectors.iter().map(|row| &row[start..start + len]).collect();
            // Column by column, so each column brings in at most four new rows and the block's
            // memory reads spread over its arithmetic. The last column and the diagonal tiles
            // are cut to size, so exactly the n(n + 1)/2 needed products are computed.
            for side in (0..n).step_by(TILE) {
                let width = TILE.min(n - side);
                for top in (0..side).step_by(TILE) {
                    match width {
                        1 => tile::<S, TILE, 1, false>(simd, &block, top, side, gram),
                        2 => tile::<S, TILE, 2, false>(simd, &block, top, side, gram),
                        3 => tile::<S, TILE, 3, false>(simd, &block, top, side, gram),
                        _ => tile::<S, TILE, TILE, false>(simd, &block, top, side, gram),
                    }
                }
                match width {
                    1 => tile::<S, 1, 1, true>(simd, &block, side, side, gram),
                    2 => tile::<S, 2, 2, true>(simd, &block, side, side, gram),
                    3 => tile::<S, 3, 3, true>(simd, &block, side, side, gram),
                    _ => tile::<S, TILE, TILE, true>(simd, &block, side, side, gram),
                }
            }
            start += len;
        }
        std::hint::black_box(touched);
        // The last `d mod lanes` coordinates.
        for i in 0..n {
            for j in i..n {
                let tail: f64 = rows.row(i)[whole..]
                    .iter()
                    .zip(&rows.row(j)[whole..])
                    .map(|(&x, &y)| f64::from(x) * f64::from(y))
                    .sum();
                gram[[i, j]] += tail;
            }
        }
    }
}

/// Adds to `gram` the `H × W` dot products of block rows `top..top + H` with rows
/// `side..side + W` (all present); a `DIAGONAL` tile (top = side, H = W) computes only its upper
/// triangle. The products are summed in SIMD `f32` lanes, then in `f64`.
#[inline(always)]
fn tile<S: Simd, const H: usize, const W: usize, const DIAGONAL: bool>(
    simd: S,
    block: &[&[S::f32s]],
    top: usize,
    side: usize,
    gram: &mut Array2<f64>,
) {
    let len = block[top].len();
    let left: [&[S::f32s]; H] = std::array::from_fn(|p| &block[top + p][..len]);
    let right: [&[S::f32s]; W] = std::array::from_fn(|q| &block[side + q][..len]);
    let zero = simd.splat_f32s(0.0);
    let mut sums = [[zero; W]; H];
    for c in 0..len {
        let x = left.map(|row| row[c]);
        let y = right.map(|row| row[c]);
        for p in 0..H {
            for q in 0..W {
                if !DIAGONAL || p <= q {
                    sums[p][q] = simd.mul_add_e_f32s(x[p], y[q], sums[p][q]);
                }
            }
        }
    }
    for (p, row_sums) in sums.iter().enumerate() {
        for (q, &sum) in row_sums.iter().enumerate() {
            if !DIAGONAL || p <= q {
                gram[[top + p, side + q]] += f64::from(simd.reduce_sum_f32s(sum));
            }
        }
    }
}

/// The fallback without wide SIMD: blocks packed into one contiguous matrix and multiplied by
/// matrixmultiply's sgemm (which dispatches to its own kernels), accumulated in `f64`.
fn gram_by_matrix_product(rows: &Rows<'_>, gram: &mut Array2<f64>) {
    let n = rows.len();
    let dim = rows.dim();
    let block = FALLBACK_BLOCK.min(dim).max(1);
    let mut packed = Array2::<f32>::zeros((n, block));
    let mut block_gram = Array2::<f32>::zeros((n, n));
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
        for ((i, j), total) in gram.indexed_iter_mut() {
            if i <= j {
                *total += f64::from(block_gram[[i, j]]);
            }
        }
        start = end;
    }
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
