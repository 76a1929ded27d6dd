//! Pairwise squared Euclidean distances, shared by Krum, Multi-Krum, Bulyan, MDA and NNM.
//!
//! Each of the n(n − 1)/2 distances is accumulated directly as Σ (xᵢ − xⱼ)²: one subtraction and
//! one fused multiply-add per pair and coordinate. This costs fewer multiplications than the
//! Gram-matrix identity ‖xᵢ‖² + ‖xⱼ‖² − 2⟨xᵢ, xⱼ⟩ (which needs the n diagonal products too),
//! the subtractions run on the CPU's separate add units, and it does not cancel: inputs much
//! closer to each other than to the origin (gradients around a common mean) keep their full
//! relative precision.
//!
//! The kernel reads the rows in place (they need not be contiguous with each other) in blocks of
//! coordinates that stay in L2, and computes tiles of up to 4 × 4 pairs with 16 SIMD
//! accumulators held in registers, so each loaded vector feeds four pairs. A block's sums (at
//! most [`BLOCK_VECTORS`] non-negative terms per `f32` lane) are added into an `f64` matrix, so
//! rounding does not grow with d. It runs with AVX-512 or AVX2 + FMA when the CPU has them
//! (pulp's safe run-time dispatch), else as scalar code.
//!
//! Non-finite handling: a NaN, an infinity (∞ − ∞ is NaN), or a square that overflows `f32` makes
//! the affected distances non-finite; they are all reported as +∞ so callers can order them.
//! Other pairs are unaffected.

use ndarray::{Array1, Array2, ArrayView1};
use pulp::{Arch, Simd, WithSimd};

use super::{GarError, average, rows::Rows};

/// Rows per side of a register tile: 16 accumulators plus 8 loaded vectors fit the 32 AVX-512
/// registers (AVX2 has 16 and spills a little).
const TILE: usize = 4;

/// SIMD vectors per block and row (32 KiB per row with AVX-512): a block of up to 31 rows stays
/// in L2 while every tile reads it, and each row is read in runs long enough for the hardware
/// prefetchers.
const BLOCK_VECTORS: usize = 512;

/// The `n × n` matrix of squared Euclidean distances between `inputs`, in `f64`, symmetric with
/// a zero diagonal; non-finite (or overflowing) distances are +∞. Errors on empty or ragged
/// inputs.
pub fn pairwise_sq_distances(inputs: &[ArrayView1<'_, f32>]) -> Result<Array2<f64>, GarError> {
    Ok(sq_distances(&Rows::new(inputs)?))
}

/// [`pairwise_sq_distances`] of validated rows.
pub(crate) fn sq_distances(rows: &Rows<'_>) -> Array2<f64> {
    sq_distances_guessing(rows, |_| None).0
}

/// A guessed set of rows and their sum over the coordinates the Gram pass reached after the
/// guess, accumulated while those coordinates were in cache.
///
/// A selecting rule (MDA, Multi-Krum) must read the rows it keeps a second time to average
/// them, which costs as much memory traffic as the distances themselves. Instead, the rule
/// guesses its selection from the distances over the first coordinates, the Gram pass sums the
/// guessed rows as it goes, and if the final selection equals the guess only the first
/// coordinates remain to be summed. The result is bit-identical to summing the rows directly
/// (same rows, same order, same arithmetic); a wrong guess costs one ordinary second pass.
pub(crate) struct Guess {
    /// The guessed rows, sorted.
    members: Vec<usize>,
    /// First coordinate included in `sum`; `sum` also stops at the last whole SIMD vector.
    from: usize,
    /// End (exclusive) of the coordinates included in `sum`.
    to: usize,
    /// Σ of the member rows for coordinates `from..to` (zero elsewhere).
    sum: Vec<f32>,
}

impl Guess {
    /// The mean of `selected` (sorted), if it is the guessed set: the missing coordinates are
    /// summed now and everything is scaled by 1/k, exactly as [`average::mean_of`] would.
    pub(crate) fn mean_if(self, rows: &Rows<'_>, selected: &[usize]) -> Option<Array1<f32>> {
        if self.members != selected {
            return None;
        }
        let Self {
            members,
            from,
            to,
            mut sum,
        } = self;
        for range in [0..from, to..rows.dim()] {
            let part = average::sum_of(&rows.slice(range.clone()), &members);
            sum[range].copy_from_slice(part.as_slice()?);
        }
        let scale = 1.0 / members.len() as f32;
        for x in &mut sum {
            *x *= scale;
        }
        Some(Array1::from_vec(sum))
    }
}

/// [`sq_distances`], and the sum of the rows `guess` picks from the distances over the first
/// coordinates (see [`Guess`]); `guess` may decline with `None`.
pub(crate) fn sq_distances_guessing(
    rows: &Rows<'_>,
    guess: impl FnMut(&Array2<f64>) -> Option<Vec<usize>>,
) -> (Array2<f64>, Option<Guess>) {
    let n = rows.len();
    let mut sums = Array2::<f64>::zeros((n, n));
    let guessed = Arch::new().dispatch(DistanceKernel {
        rows,
        sums: &mut sums,
        guess,
    });
    (symmetric(&sums), guessed)
}

/// The full distance matrix from sums accumulated on the upper triangle (i < j).
fn symmetric(sums: &Array2<f64>) -> Array2<f64> {
    let n = sums.nrows();
    Array2::from_shape_fn((n, n), |(i, j)| {
        let squared = if i == j {
            0.0
        } else {
            sums[[i.min(j), i.max(j)]]
        };
        if squared.is_finite() {
            squared
        } else {
            f64::INFINITY
        }
    })
}

/// Accumulates Σ (xᵢ − xⱼ)² for i < j into the upper triangle of `sums`.
struct DistanceKernel<'k, 'a, G> {
    rows: &'k Rows<'a>,
    sums: &'k mut Array2<f64>,
    guess: G,
}

impl<G: FnMut(&Array2<f64>) -> Option<Vec<usize>>> WithSimd for DistanceKernel<'_, '_, G> {
    type Output = Option<Guess>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Option<Guess> {
        let Self {
            rows,
            sums,
            mut guess,
        } = self;
        let n = rows.len();
        let lanes = S::F32_LANES;
        let whole = rows.dim() / lanes * lanes;
        let vectors: Vec<&[S::f32s]> = rows
            .iter()
            .map(|row| S::as_simd_f32s(&row[..whole]).0)
            .collect();
        let count = whole / lanes;
        // The guess is made once the first blocks (a sixteenth of the data) are done, if enough
        // blocks remain for the running sum to save a pass.
        let guess_at = count.div_ceil(16).div_ceil(BLOCK_VECTORS) * BLOCK_VECTORS;
        let mut guessed: Option<Guess> = None;
        let mut start = 0;
        while start < count {
            if start == guess_at && count - start >= 4 * BLOCK_VECTORS {
                guessed = guess(&symmetric(sums)).map(|members| Guess {
                    members,
                    from: start * lanes,
                    to: whole,
                    sum: vec![0.0; rows.dim()],
                });
            }
            let len = BLOCK_VECTORS.min(count - start);
            let block: Vec<&[S::f32s]> =
                vectors.iter().map(|row| &row[start..start + len]).collect();
            // Column by column, so each column brings in at most four new rows and the block's
            // memory reads spread over its arithmetic. The last column and the diagonal tiles
            // are cut to size, so exactly the n(n − 1)/2 pairs are computed.
            for side in (0..n).step_by(TILE) {
                let width = TILE.min(n - side);
                for top in (0..side).step_by(TILE) {
                    match width {
                        1 => tile::<S, TILE, 1, false>(simd, &block, top, side, sums),
                        2 => tile::<S, TILE, 2, false>(simd, &block, top, side, sums),
                        3 => tile::<S, TILE, 3, false>(simd, &block, top, side, sums),
                        _ => tile::<S, TILE, TILE, false>(simd, &block, top, side, sums),
                    }
                }
                match width {
                    1 => {}
                    2 => tile::<S, 2, 2, true>(simd, &block, side, side, sums),
                    3 => tile::<S, 3, 3, true>(simd, &block, side, side, sums),
                    _ => tile::<S, TILE, TILE, true>(simd, &block, side, side, sums),
                }
            }
            if let Some(guess) = guessed.as_mut() {
                let (from, to) = (start * lanes, (start + len) * lanes);
                let block_rows: Vec<&[f32]> = guess
                    .members
                    .iter()
                    .map(|&index| &rows.row(index)[from..to])
                    .collect();
                average::add_all(simd, &mut guess.sum[from..to], &block_rows);
            }
            start += len;
        }
        // The last `d mod lanes` coordinates.
        for i in 0..n {
            for j in i + 1..n {
                let tail: f64 = rows.row(i)[whole..]
                    .iter()
                    .zip(&rows.row(j)[whole..])
                    .map(|(&x, &y)| {
                        let difference = f64::from(x) - f64::from(y);
                        difference * difference
                    })
                    .sum();
                sums[[i, j]] += tail;
            }
        }
        guessed
    }
}

/// Adds to `sums` the squared distances between block rows `top..top + H` and rows
/// `side..side + W` (all present); a `DIAGONAL` tile (top = side, H = W) computes only pairs
/// p < q. Summed in SIMD `f32` lanes over the block, then in `f64`.
#[inline(always)]
fn tile<S: Simd, const H: usize, const W: usize, const DIAGONAL: bool>(
    simd: S,
    block: &[&[S::f32s]],
    top: usize,
    side: usize,
    sums: &mut Array2<f64>,
) {
    let len = block[top].len();
    let left: [&[S::f32s]; H] = std::array::from_fn(|p| &block[top + p][..len]);
    let right: [&[S::f32s]; W] = std::array::from_fn(|q| &block[side + q][..len]);
    let zero = simd.splat_f32s(0.0);
    let mut partial = [[zero; W]; H];
    for c in 0..len {
        let x = left.map(|row| row[c]);
        let y = right.map(|row| row[c]);
        for p in 0..H {
            for q in 0..W {
                if !DIAGONAL || p < q {
                    let difference = simd.sub_f32s(x[p], y[q]);
                    partial[p][q] = simd.mul_add_e_f32s(difference, difference, partial[p][q]);
                }
            }
        }
    }
    for (p, row) in partial.iter().enumerate() {
        for (q, &sum) in row.iter().enumerate() {
            if !DIAGONAL || p < q {
                sums[[top + p, side + q]] += f64::from(simd.reduce_sum_f32s(sum));
            }
        }
    }
}

/// Squared Euclidean distance from every row to `center` (to the origin when `None`), summed
/// in SIMD `f32` lanes over blocks of [`BLOCK_VECTORS`] vectors and in `f64` across blocks.
/// Non-finite results (NaN, ∞, overflow) are +∞.
pub(crate) fn sq_distances_to(rows: &Rows<'_>, center: Option<&[f32]>) -> Vec<f64> {
    Arch::new().dispatch(ToCenter { rows, center })
}

struct ToCenter<'k, 'a> {
    rows: &'k Rows<'a>,
    center: Option<&'k [f32]>,
}

impl WithSimd for ToCenter<'_, '_> {
    type Output = Vec<f64>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<f64> {
        let Self { rows, center } = self;
        let lanes = S::F32_LANES;
        let whole = rows.dim() / lanes * lanes;
        let centers = center.map(|center| S::as_simd_f32s(&center[..whole]).0);
        // A plain loop, not an iterator closure: a closure would be compiled outside the SIMD
        // context and call every vector operation out of line.
        let mut distances = Vec::with_capacity(rows.len());
        for row in rows.iter() {
            let vectors = S::as_simd_f32s(&row[..whole]).0;
            let mut total = 0.0f64;
            for start in (0..vectors.len()).step_by(BLOCK_VECTORS) {
                let end = vectors.len().min(start + BLOCK_VECTORS);
                let block = &vectors[start..end];
                let sum = match centers {
                    Some(centers) => squared_differences(simd, block, &centers[start..end]),
                    None => squared_differences(simd, block, &[]),
                };
                total += f64::from(simd.reduce_sum_f32s(sum));
            }
            for (k, &x) in row[whole..].iter().enumerate() {
                let difference =
                    f64::from(x) - center.map_or(0.0, |center| f64::from(center[whole + k]));
                total += difference * difference;
            }
            distances.push(if total.is_finite() {
                total
            } else {
                f64::INFINITY
            });
        }
        distances
    }
}

/// Σ (x − c)² over the vectors of `block`, lane-wise, with `center` zero when empty. Two
/// accumulators hide the multiply-add latency.
#[inline(always)]
fn squared_differences<S: Simd>(simd: S, block: &[S::f32s], center: &[S::f32s]) -> S::f32s {
    let zero = simd.splat_f32s(0.0);
    let (mut even, mut odd) = (zero, zero);
    let pairs = block.chunks_exact(2);
    let rest = pairs.remainder();
    if center.is_empty() {
        for pair in pairs {
            even = simd.mul_add_e_f32s(pair[0], pair[0], even);
            odd = simd.mul_add_e_f32s(pair[1], pair[1], odd);
        }
        for &x in rest {
            even = simd.mul_add_e_f32s(x, x, even);
        }
    } else {
        let center = &center[..block.len()];
        for (pair, centers) in pairs.zip(center.chunks_exact(2)) {
            let first = simd.sub_f32s(pair[0], centers[0]);
            let second = simd.sub_f32s(pair[1], centers[1]);
            even = simd.mul_add_e_f32s(first, first, even);
            odd = simd.mul_add_e_f32s(second, second, odd);
        }
        for (&x, &c) in rest.iter().zip(&center[block.len() - rest.len()..]) {
            let difference = simd.sub_f32s(x, c);
            even = simd.mul_add_e_f32s(difference, difference, even);
        }
    }
    simd.add_f32s(even, odd)
}
