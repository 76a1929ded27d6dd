//! Coordinate-wise order statistics (median, trimmed mean) at memory speed.
//!
//! A rule here is an [`OrderStatistic`]: a function of one coordinate's sorted values. The values
//! are sorted by a comparator network applied lane-wise, SIMD vector by SIMD vector.
//!
//! For `n ≤ 32` the network is fixed at compile time: Batcher's merge exchange
//! (Knuth TAOCP vol. 3 §5.2.2 Algorithm M) is computed by a `const fn` for each `n`, and the
//! comparators are expanded in straight-line code on a local array of `n` SIMD vectors, one per
//! input. With every index a constant, the compiler keeps the wires in registers (AVX-512 has 32)
//! and drops the comparators whose results the rule never reads, so each comparator costs one
//! min and one max instead of loads and stores through memory (the median of 19 inputs then
//! takes under twice the time of reading them once). For larger `n`, or without AVX2/AVX-512,
//! the run-time network of [`super::network`] is used instead.
//!
//! Both paths order NaN as +∞ (PAPER.md §10.2) and give the same results (up to the sign of a
//! zero): the same sorted values are combined in the same order.

use ndarray::Array1;
use pulp::{Arch, Simd, WithSimd};

use super::{
    network::{self, Network},
    rows::Rows,
};

/// Capacity of a compile-time network: Batcher's network on 32 wires has 191 comparators.
const MAX_PAIRS: usize = 192;

/// Expands `$body` once for each `$k` in `0..192` ([`MAX_PAIRS`]), as a constant, so that
/// array indices derived from it are constants too.
macro_rules! unrolled {
    ($k:ident => $body:block) => {
        unrolled!(@tens $k $body; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18);
        unrolled!(@units $k $body; 19; 0 1);
    };
    (@tens $k:ident $body:block; $($tens:literal)*) => {
        $(unrolled!(@units $k $body; $tens; 0 1 2 3 4 5 6 7 8 9);)*
    };
    (@units $k:ident $body:block; $tens:literal; $($units:literal)*) => {
        $({
            const $k: usize = $tens * 10 + $units;
            $body
        })*
    };
}

/// A function of the sorted values of one coordinate.
pub(crate) trait OrderStatistic: Copy {
    /// The run-time network for `n` inputs: it must leave on the wires the statistic reads the
    /// same values, in the same order, as a full sort.
    fn network(self, n: usize) -> Network;

    /// The statistic of one coordinate, given `rank(k)`, its k-th smallest value (NaN as +∞).
    fn combine(self, n: usize, rank: impl Fn(usize) -> f32) -> f32;

    /// The statistic of a vector of coordinates, given their sorted values. Must compute the
    /// same thing in the same order as [`OrderStatistic::combine`], lane-wise, and index
    /// `sorted` with constants only (see [`unrolled`]) so that it stays in registers.
    fn combine_simd<S: Simd, const N: usize>(self, simd: S, sorted: &[S::f32s; N]) -> S::f32s;
}

/// Coordinate-wise median: the middle value, or the mean of the two middle values for even `n`
/// (via [`network::midpoint`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Median;

impl OrderStatistic for Median {
    fn network(self, n: usize) -> Network {
        // The two middle wires of an even count may end up swapped, which the symmetric
        // midpoint does not notice.
        Network::selecting(n, (n - 1) / 2..n / 2 + 1)
    }

    #[inline(always)]
    fn combine(self, n: usize, rank: impl Fn(usize) -> f32) -> f32 {
        if n % 2 == 1 {
            rank(n / 2)
        } else {
            network::midpoint(rank(n / 2 - 1), rank(n / 2))
        }
    }

    #[inline(always)]
    fn combine_simd<S: Simd, const N: usize>(self, simd: S, sorted: &[S::f32s; N]) -> S::f32s {
        if N % 2 == 1 {
            return sorted[N / 2];
        }
        let (a, b) = (sorted[N / 2 - 1], sorted[N / 2]);
        let half = simd.splat_f32s(0.5);
        let sum = simd.add_f32s(a, b);
        let halves = simd.add_f32s(simd.mul_f32s(a, half), simd.mul_f32s(b, half));
        // Same rule as `network::midpoint`: sum − sum is 0 exactly when the sum is finite.
        let finite = simd.equal_f32s(simd.sub_f32s(sum, sum), simd.splat_f32s(0.0));
        simd.select_f32s(finite, simd.mul_f32s(sum, half), halves)
    }
}

/// Coordinate-wise trimmed mean: the mean of ranks `f..n − f`, summed in rank order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trimmed {
    /// Values trimmed at each end.
    pub(crate) f: usize,
}

impl OrderStatistic for Trimmed {
    fn network(self, n: usize) -> Network {
        // Fully sorted: the kept values are summed in rank order, as on the register path.
        Network::sorting(n)
    }

    #[inline(always)]
    fn combine(self, n: usize, rank: impl Fn(usize) -> f32) -> f32 {
        let mut sum = 0.0f32;
        for k in self.f..n - self.f {
            sum += rank(k);
        }
        sum * (1.0 / (n - 2 * self.f) as f32)
    }

    #[inline(always)]
    fn combine_simd<S: Simd, const N: usize>(self, simd: S, sorted: &[S::f32s; N]) -> S::f32s {
        let mut sum = simd.splat_f32s(0.0);
        unrolled!(K => {
            if K < N && (self.f..N - self.f).contains(&K) {
                sum = simd.add_f32s(sum, sorted[K]);
            }
        });
        simd.mul_f32s(sum, simd.splat_f32s(1.0 / (N - 2 * self.f) as f32))
    }
}

/// Applies `statistic` to every coordinate of validated rows.
pub(crate) fn reduce<R: OrderStatistic>(rows: &Rows<'_>, statistic: R) -> Array1<f32> {
    let mut out = vec![0.0f32; rows.dim()];
    macro_rules! by_size {
        ($($n:literal)*) => {
            match rows.len() {
                $($n => Arch::new().dispatch(Registers::<'_, '_, '_, R, $n> {
                    rows,
                    statistic,
                    out: &mut out,
                }),)*
                _ => by_network(rows, statistic, &mut out),
            }
        };
    }
    by_size!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
    Array1::from_vec(out)
}

/// The run-time network path, for any `n`.
fn by_network<R: OrderStatistic>(rows: &Rows<'_>, statistic: R, out: &mut [f32]) {
    let n = rows.len();
    let network = statistic.network(n);
    network::for_each_chunk(
        rows,
        &network,
        #[inline(always)]
        |start, width, wires| {
            for (lane, slot) in out[start..start + width].iter_mut().enumerate() {
                *slot = statistic.combine(n, |k| wires[k][lane]);
            }
        },
    );
}

/// Batcher's merge exchange on `n ≤ 32` wires, evaluated at compile time: the comparators and
/// their number.
const fn merge_exchange(n: usize) -> ([(u8, u8); MAX_PAIRS], usize) {
    let mut pairs = [(0u8, 0u8); MAX_PAIRS];
    let mut count = 0;
    if n < 2 {
        return (pairs, count);
    }
    let t = usize::BITS - (n - 1).leading_zeros();
    let mut p = 1usize << (t - 1);
    while p > 0 {
        let mut q = 1usize << (t - 1);
        let mut r = 0;
        let mut d = p;
        loop {
            let mut i = 0;
            while i + d < n {
                if i & p == r {
                    pairs[count] = (i as u8, (i + d) as u8);
                    count += 1;
                }
                i += 1;
            }
            if q == p {
                break;
            }
            d = q - p;
            q >>= 1;
            r = p;
        }
        p >>= 1;
    }
    (pairs, count)
}

/// The compile-time network on `N` wires.
struct Sorter<const N: usize>;

impl<const N: usize> Sorter<N> {
    const NETWORK: ([(u8, u8); MAX_PAIRS], usize) = merge_exchange(N);
}

/// Sorts `wires` lane-wise, ascending, with the compile-time network (NaN-free input).
#[inline(always)]
fn sort_registers<S: Simd, const N: usize>(simd: S, wires: &mut [S::f32s; N]) {
    unrolled!(K => {
        if K < Sorter::<N>::NETWORK.1 {
            let (i, j) = Sorter::<N>::NETWORK.0[K];
            let (i, j) = (i as usize, j as usize);
            let (a, b) = (wires[i], wires[j]);
            wires[i] = simd.min_f32s(a, b);
            wires[j] = simd.max_f32s(a, b);
        }
    });
}

/// The register path for `N` inputs, one SIMD vector of coordinates per step.
struct Registers<'k, 'a, 'o, R, const N: usize> {
    rows: &'k Rows<'a>,
    statistic: R,
    out: &'o mut [f32],
}

impl<R: OrderStatistic, const N: usize> WithSimd for Registers<'_, '_, '_, R, N> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            rows,
            statistic,
            out,
        } = self;
        if S::F32_LANES < 4 {
            // No wide SIMD: the run-time network on 64-lane chunks vectorizes better.
            return by_network(rows, statistic, out);
        }
        let lanes = S::F32_LANES;
        let whole = rows.dim() / lanes * lanes;
        let infinity = simd.splat_f32s(f32::INFINITY);
        let mut sources: [&[S::f32s]; N] = [&[]; N];
        for (source, row) in sources.iter_mut().zip(rows.iter()) {
            *source = S::as_simd_f32s(&row[..whole]).0;
        }
        let (targets, _) = S::as_mut_simd_f32s(&mut out[..whole]);
        for (step, target) in targets.iter_mut().enumerate() {
            let mut wires = [infinity; N];
            unrolled!(K => {
                if K < N {
                    let x = sources[K][step];
                    // x == x fails exactly for NaN, which becomes +∞.
                    wires[K] = simd.select_f32s(simd.equal_f32s(x, x), x, infinity);
                }
            });
            sort_registers(simd, &mut wires);
            *target = statistic.combine_simd(simd, &wires);
        }
        // The last `d mod lanes` coordinates, one at a time with the same order and arithmetic.
        let mut values = [0.0f32; N];
        for (offset, slot) in out[whole..].iter_mut().enumerate() {
            for (value, row) in values.iter_mut().zip(rows.iter()) {
                let x = row[whole + offset];
                *value = if x.is_nan() { f32::INFINITY } else { x };
            }
            values.sort_unstable_by(f32::total_cmp);
            *slot = statistic.combine(N, |k| values[k]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_PAIRS, merge_exchange};
    use crate::gar::network::Network;

    #[test]
    fn compile_time_networks_match_the_run_time_construction() {
        for n in 0..=32 {
            let (pairs, count) = merge_exchange(n);
            assert!(count <= MAX_PAIRS);
            let pairs: Vec<(u32, u32)> = pairs[..count]
                .iter()
                .map(|&(i, j)| (u32::from(i), u32::from(j)))
                .collect();
            assert_eq!(pairs, Network::sorting(n).pairs(), "n = {n}");
        }
    }
}
