//! Comparator networks built at run time and applied lane-wise: the sorting engine of Meamed
//! and Bulyan's second phase, and of the median and trimmed mean when `n > 32` or the CPU lacks
//! AVX2 (otherwise [`super::order`] uses networks fixed at compile time).
//!
//! Sorting each coordinate's `n` values separately costs a branchy sort per coordinate. Instead,
//! [`LANES`] consecutive coordinates are processed together: wire `i` holds input `i`'s values
//! for those coordinates as a `[f32; LANES]`, and each comparator is a lane-wise SIMD min/max
//! with no branches. The network is built once per call (Batcher's merge exchange, Knuth TAOCP
//! vol. 3 §5.2.2 Algorithm M, valid for any `n`) and may be pruned down to the comparators that
//! influence the output ranks a rule needs.
//!
//! NaN handling (PAPER.md §10.2): values are loaded through [`load`], which maps NaN to +∞, so
//! NaN sorts as the largest value and, with at most `f` non-finite inputs and `n ≥ 2f + 1`,
//! never reaches the median or the trimmed window. The comparators may therefore assume no NaN.

use std::ops::Range;

use pulp::{Arch, Simd, WithSimd};

use super::rows::Rows;

/// Coordinates processed together: 256 bytes of each row per chunk, so the loop and index
/// overhead of the interpreted network is shared by four AVX-512 vectors.
pub(crate) const LANES: usize = 64;

/// One wire's values for a chunk of [`LANES`] coordinates.
pub(crate) type Lanes = [f32; LANES];

/// A comparator network on `wires` wires: each pair `(i, j)` with `i < j` leaves the smaller
/// value on wire `i` and the larger on wire `j`.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pairs: Vec<(u32, u32)>,
}

impl Network {
    /// A network that sorts `n` wires ascending (Batcher's merge exchange, Knuth Algorithm M):
    /// O(n log² n) comparators, e.g. 91 for n = 19 and 186 for n = 31.
    pub(crate) fn sorting(n: usize) -> Self {
        let mut pairs = Vec::new();
        if n < 2 {
            return Self { pairs };
        }
        let t = usize::BITS - (n - 1).leading_zeros();
        let mut p = 1usize << (t - 1);
        while p > 0 {
            let mut q = 1usize << (t - 1);
            let mut r = 0;
            let mut d = p;
            loop {
                for i in 0..n - d {
                    if i & p == r {
                        pairs.push((i as u32, (i + d) as u32));
                    }
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
        Self { pairs }
    }

    /// The sorting network on `n` wires, minus every comparator that cannot change the multiset
    /// of values ending on the wires in `kept` (the ranks a rule reads).
    ///
    /// Walking backwards, a comparator is dropped when neither of its wires is read by a later
    /// kept comparator and both wires end in the same class (both in `kept`, or both outside):
    /// it then only swaps two values within one class. For the median of 19 this keeps 75 of
    /// 91 comparators.
    pub(crate) fn selecting(n: usize, kept: Range<usize>) -> Self {
        let sorting = Self::sorting(n);
        let mut free = vec![true; n];
        let mut pairs: Vec<(u32, u32)> = sorting
            .pairs
            .iter()
            .rev()
            .filter(|&&(i, j)| {
                let (i, j) = (i as usize, j as usize);
                let droppable = free[i] && free[j] && kept.contains(&i) == kept.contains(&j);
                if !droppable {
                    free[i] = false;
                    free[j] = false;
                }
                !droppable
            })
            .copied()
            .collect();
        pairs.reverse();
        Self { pairs }
    }

    /// Number of comparators.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pairs.len()
    }

    /// The comparators, in order.
    #[cfg(test)]
    pub(crate) fn pairs(&self) -> &[(u32, u32)] {
        &self.pairs
    }

    /// Applies the network to `wires` (at least as many as the network was built for; NaN-free)
    /// with `simd`'s vector width.
    #[inline(always)]
    fn apply<S: Simd>(&self, simd: S, wires: &mut [Lanes]) {
        for &(i, j) in &self.pairs {
            let (i, j) = (i as usize, j as usize);
            let (low, high) = min_max(simd, &wires[i], &wires[j]);
            wires[i] = low;
            wires[j] = high;
        }
    }
}

/// Lane-wise (min, max) of two NaN-free wires, with explicit SIMD min/max. (Written as
/// compare-and-select, LLVM turns the in-place update into a masked store, which AMD cores
/// cannot forward to the next load of the same wire: several times slower.)
#[inline(always)]
fn min_max<S: Simd>(simd: S, a: &Lanes, b: &Lanes) -> (Lanes, Lanes) {
    let mut low = *a;
    let mut high = *b;
    let (a_vectors, a_rest) = S::as_simd_f32s(a);
    let (b_vectors, b_rest) = S::as_simd_f32s(b);
    let (low_vectors, low_rest) = S::as_mut_simd_f32s(&mut low);
    for ((slot, &x), &y) in low_vectors.iter_mut().zip(a_vectors).zip(b_vectors) {
        *slot = simd.min_f32s(x, y);
    }
    for ((slot, &x), &y) in low_rest.iter_mut().zip(a_rest).zip(b_rest) {
        *slot = x.min(y);
    }
    let (high_vectors, high_rest) = S::as_mut_simd_f32s(&mut high);
    for ((slot, &x), &y) in high_vectors.iter_mut().zip(a_vectors).zip(b_vectors) {
        *slot = simd.max_f32s(x, y);
    }
    for ((slot, &x), &y) in high_rest.iter_mut().zip(a_rest).zip(b_rest) {
        *slot = x.max(y);
    }
    (low, high)
}

/// Loads coordinates `start..start + width` of every row into `wires`, NaN mapped to +∞. Lanes
/// past `width` (the last, partial chunk) are zero and must be ignored by the caller.
#[inline(always)]
fn load<S: Simd>(simd: S, rows: &Rows<'_>, start: usize, width: usize, wires: &mut [Lanes]) {
    let infinity = simd.splat_f32s(f32::INFINITY);
    for (wire, row) in wires.iter_mut().zip(rows.iter()) {
        if let Ok(chunk) = <&Lanes>::try_from(&row[start..start + width]) {
            // Computed in registers and stored whole: patching NaN lanes in place would become a
            // masked store, which stalls the network's next load of this wire.
            let (sources, source_rest) = S::as_simd_f32s(chunk);
            let (targets, target_rest) = S::as_mut_simd_f32s(wire);
            for (target, &x) in targets.iter_mut().zip(sources) {
                // x == x fails exactly for NaN.
                *target = simd.select_f32s(simd.equal_f32s(x, x), x, infinity);
            }
            for (target, &x) in target_rest.iter_mut().zip(source_rest) {
                *target = if x.is_nan() { f32::INFINITY } else { x };
            }
        } else {
            *wire = [0.0; LANES];
            for (slot, &x) in wire.iter_mut().zip(&row[start..start + width]) {
                *slot = if x.is_nan() { f32::INFINITY } else { x };
            }
        }
    }
}

/// Runs `per_chunk(start, width, wires)` over all coordinates, chunk by chunk, with `wires`
/// freshly loaded and passed through `network`.
///
/// The loop is compiled for the widest SIMD instruction set this CPU offers (AVX-512, AVX2, or
/// scalar code the compiler may vectorize for the baseline), chosen at run time by pulp's safe
/// dispatch: the binary targets baseline x86-64, and the workspace forbids `unsafe`.
/// `per_chunk` is inlined into that loop, so its lane loops vectorize the same way.
pub(crate) fn for_each_chunk<F: FnMut(usize, usize, &[Lanes])>(
    rows: &Rows<'_>,
    network: &Network,
    per_chunk: F,
) {
    struct Kernel<'k, 'a, F> {
        rows: &'k Rows<'a>,
        network: &'k Network,
        per_chunk: F,
    }
    impl<F: FnMut(usize, usize, &[Lanes])> WithSimd for Kernel<'_, '_, F> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(mut self, simd: S) {
            let dim = self.rows.dim();
            let mut wires = vec![[0.0f32; LANES]; self.rows.len()];
            let mut start = 0;
            while start < dim {
                let width = LANES.min(dim - start);
                load(simd, self.rows, start, width, &mut wires);
                self.network.apply(simd, &mut wires);
                (self.per_chunk)(start, width, &wires);
                start += width;
            }
        }
    }
    Arch::new().dispatch(Kernel {
        rows,
        network,
        per_chunk,
    });
}

/// Mean of two order statistics without overflow: `(a + b) / 2` when the sum is finite, else
/// `a / 2 + b / 2` (so two huge finite values do not average to ∞).
#[inline(always)]
pub(crate) fn midpoint(a: f32, b: f32) -> f32 {
    let sum = a + b;
    if sum.is_finite() {
        sum * 0.5
    } else {
        a * 0.5 + b * 0.5
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::{LANES, Lanes, Network};

    fn sorted_by_network(network: &Network, values: &[f32]) -> Vec<f32> {
        let mut wires: Vec<Lanes> = values.iter().map(|&x| [x; LANES]).collect();
        network.apply(pulp::Scalar, &mut wires);
        wires.iter().map(|wire| wire[0]).collect()
    }

    /// The 0-1 principle (Knuth §5.3.4 Theorem Z): a network sorts every input iff it sorts
    /// every 0/1 input, so checking all 2^n binary inputs proves the construction for that n.
    #[test]
    fn merge_exchange_sorts_every_binary_input_up_to_sixteen_wires() {
        for n in 1..=16usize {
            let network = Network::sorting(n);
            for bits in 0u32..(1 << n) {
                let values: Vec<f32> = (0..n).map(|i| ((bits >> i) & 1) as f32).collect();
                let sorted = sorted_by_network(&network, &values);
                assert!(
                    sorted.is_sorted(),
                    "n = {n}, input {bits:b} gave {sorted:?}"
                );
            }
        }
    }

    #[test]
    fn merge_exchange_sorts_random_inputs_up_to_forty_wires() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in 17..=40usize {
            let network = Network::sorting(n);
            for _ in 0..200 {
                let values: Vec<f32> = (0..n).map(|_| rng.random_range(-5..5) as f32).collect();
                let mut expected = values.clone();
                expected.sort_by(f32::total_cmp);
                assert_eq!(sorted_by_network(&network, &values), expected, "n = {n}");
            }
        }
    }

    /// A pruned network must leave exactly the sorted values' multiset on the kept wires.
    #[test]
    fn selecting_network_keeps_the_requested_ranks() {
        let mut rng = StdRng::seed_from_u64(11);
        for n in 1..=33usize {
            for f in 0..=(n - 1) / 2 {
                let kept = f..n - f;
                let network = Network::selecting(n, kept.clone());
                for _ in 0..50 {
                    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-3..4) as f32).collect();
                    let mut expected = values.clone();
                    expected.sort_by(f32::total_cmp);
                    let mut got = sorted_by_network(&network, &values)[kept.clone()].to_vec();
                    got.sort_by(f32::total_cmp);
                    assert_eq!(got, expected[kept.clone()], "n = {n}, f = {f}");
                }
            }
        }
    }

    #[test]
    fn pruning_drops_comparators_for_the_median() {
        let full = Network::sorting(19);
        let median = Network::selecting(19, 9..10);
        assert!(
            median.len() < full.len(),
            "{} vs {}",
            median.len(),
            full.len()
        );
    }
}
