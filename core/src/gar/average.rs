//! Arithmetic mean, the vanilla-SGD baseline, plus the (weighted) sums of chosen rows that
//! Multi-Krum, MDA, the geometric median and the pre-aggregators reuse.
//!
//! Not Byzantine-robust: one input moves the mean arbitrarily far. Bound `n ≥ 1`; cost O(n·d),
//! one pass over the inputs. The sum runs block by block so the output block stays in L1 while
//! the rows stream through it, four rows per pass, with AVX-512 or AVX2 when the CPU has them
//! (pulp's safe run-time dispatch).

use ndarray::Array1;
use pulp::{Arch, Simd, WithSimd};

use super::rows::Rows;

/// Coordinates per block: a 16 KiB output block stays in L1, and each row is read in 16 KiB
/// runs, long enough for the hardware prefetchers.
const BLOCK: usize = 65536;

/// Mean of all rows.
pub(crate) fn mean(rows: &Rows<'_>) -> Array1<f32> {
    let all: Vec<usize> = (0..rows.len()).collect();
    mean_of(rows, &all)
}

/// Mean of the rows listed in `indices` (non-empty, each `< n`): their sum, scaled once by
/// 1/k, which keeps the mean of k copies of x as close to x as `f32` allows.
pub(crate) fn mean_of(rows: &Rows<'_>, indices: &[usize]) -> Array1<f32> {
    combine(rows, indices, None, Some(1.0 / indices.len() as f32))
}

/// Sum of the rows listed in `indices`, in that order.
pub(crate) fn sum_of(rows: &Rows<'_>, indices: &[usize]) -> Array1<f32> {
    combine(rows, indices, None, None)
}

/// `Σₖ weights[k] · row(indices[k])`. Callers leave out rows of weight 0, since `0 · ∞` is NaN.
pub(crate) fn weighted_sum(rows: &Rows<'_>, indices: &[usize], weights: &[f32]) -> Array1<f32> {
    combine(rows, indices, Some(weights), None)
}

/// `scale · Σₖ weights[k] · row(indices[k])`, with weights and scale 1 when absent (and then no
/// multiplications).
fn combine(
    rows: &Rows<'_>,
    indices: &[usize],
    weights: Option<&[f32]>,
    scale: Option<f32>,
) -> Array1<f32> {
    let mut out = vec![0.0f32; rows.dim()];
    Arch::new().dispatch(SumKernel {
        rows,
        indices,
        weights,
        scale,
        out: &mut out,
    });
    Array1::from_vec(out)
}

struct SumKernel<'k, 'a> {
    rows: &'k Rows<'a>,
    indices: &'k [usize],
    weights: Option<&'k [f32]>,
    scale: Option<f32>,
    out: &'k mut [f32],
}

impl WithSimd for SumKernel<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            rows,
            indices,
            weights,
            scale,
            out,
        } = self;
        let mut start = 0;
        while start < out.len() {
            let end = out.len().min(start + BLOCK);
            let target = &mut out[start..end];
            if let Some(weights) = weights {
                for (&index, &weight) in indices.iter().zip(weights) {
                    add_scaled(simd, target, &rows.row(index)[start..end], weight);
                }
            } else {
                let block: Vec<&[f32]> = indices
                    .iter()
                    .map(|&index| &rows.row(index)[start..end])
                    .collect();
                add_all(simd, target, &block);
            }
            if let Some(scale) = scale {
                let (vectors, rest) = S::as_mut_simd_f32s(target);
                let factor = simd.splat_f32s(scale);
                for vector in vectors {
                    *vector = simd.mul_f32s(*vector, factor);
                }
                for x in rest {
                    *x *= scale;
                }
            }
            start = end;
        }
    }
}

/// `target += Σ rows`, adding the rows one after the other in order (so every caller gets the
/// same rounding), four per pass over `target`. Every row is at least as long as `target`.
#[inline(always)]
pub(crate) fn add_all<S: Simd>(simd: S, target: &mut [f32], rows: &[&[f32]]) {
    let mut groups = rows.chunks_exact(4);
    for group in groups.by_ref() {
        add_rows(simd, target, [group[0], group[1], group[2], group[3]]);
    }
    for row in groups.remainder() {
        add_row(simd, target, row);
    }
}

/// `target += a + b + c + d`, added in that order; every row at least as long as `target`.
#[inline(always)]
fn add_rows<S: Simd>(simd: S, target: &mut [f32], rows: [&[f32]; 4]) {
    let len = target.len();
    let [a, b, c, d] = rows.map(|row| &row[..len]);
    let (targets, target_rest) = S::as_mut_simd_f32s(target);
    let (a_vectors, a_rest) = S::as_simd_f32s(a);
    let (b_vectors, b_rest) = S::as_simd_f32s(b);
    let (c_vectors, c_rest) = S::as_simd_f32s(c);
    let (d_vectors, d_rest) = S::as_simd_f32s(d);
    for ((((slot, &a), &b), &c), &d) in targets
        .iter_mut()
        .zip(a_vectors)
        .zip(b_vectors)
        .zip(c_vectors)
        .zip(d_vectors)
    {
        let pair = simd.add_f32s(simd.add_f32s(*slot, a), b);
        *slot = simd.add_f32s(simd.add_f32s(pair, c), d);
    }
    for ((((slot, &a), &b), &c), &d) in target_rest
        .iter_mut()
        .zip(a_rest)
        .zip(b_rest)
        .zip(c_rest)
        .zip(d_rest)
    {
        *slot = *slot + a + b + c + d;
    }
}

/// `target += row`; the row is at least as long as `target`.
#[inline(always)]
fn add_row<S: Simd>(simd: S, target: &mut [f32], row: &[f32]) {
    let (targets, target_rest) = S::as_mut_simd_f32s(target);
    let (vectors, rest) = S::as_simd_f32s(&row[..targets.len() * S::F32_LANES + target_rest.len()]);
    for (slot, &x) in targets.iter_mut().zip(vectors) {
        *slot = simd.add_f32s(*slot, x);
    }
    for (slot, &x) in target_rest.iter_mut().zip(rest) {
        *slot += x;
    }
}

/// `target += weight · row`; the row is at least as long as `target`.
#[inline(always)]
fn add_scaled<S: Simd>(simd: S, target: &mut [f32], row: &[f32], weight: f32) {
    let (targets, target_rest) = S::as_mut_simd_f32s(target);
    let (vectors, rest) = S::as_simd_f32s(&row[..targets.len() * S::F32_LANES + target_rest.len()]);
    let factor = simd.splat_f32s(weight);
    for (slot, &x) in targets.iter_mut().zip(vectors) {
        *slot = simd.mul_add_e_f32s(factor, x, *slot);
    }
    for (slot, &x) in target_rest.iter_mut().zip(rest) {
        *slot += weight * x;
    }
}
