//! Mean around the median, "Meamed" (Xie, Koyejo, Gupta, "Generalized Byzantine-tolerant SGD",
//! 2018, Definition 5): per coordinate, the mean of the `n − f` values closest to the
//! coordinate-wise median. Bulyan's second phase is the same operation on its selected inputs.
//!
//! NaN is ordered as +∞ and distances to the median are taken on the sorted values, so
//! non-finite values are the last to enter the window. With at most `f` of them and
//! `n ≥ 2f + 1`, the median m lies within the honest values' range [lo, hi] (width w), every value
//! in the window lies within w of m (at least `n − f` honest values are no farther), and at most
//! `f` window values are Byzantine, so each output coordinate lies in
//! [lo − f·w/(n − f), hi + f·w/(n − f)]. Unlike the trimmed mean it can leave [lo, hi] itself
//! (e.g. honest {0, 10} and a Byzantine 11 with f = 1 give 10.5).
//!
//! Ties in distance go to the lower value, so the result is deterministic. Bound `n ≥ 2f + 1`;
//! cost O(n log² n · d) through a sorting network ([`super::network`]).

use ndarray::Array1;

use super::{
    network::{self, Lanes, Network},
    rows::Rows,
};

/// Meamed of validated rows with `n ≥ 2f + 1`.
pub(crate) fn meamed(rows: &Rows<'_>, f: usize) -> Array1<f32> {
    around_median(rows, rows.len() - f)
}

/// Per coordinate, the mean of the `count` values (`1 ≤ count ≤ n`) closest to the median.
pub(crate) fn around_median(rows: &Rows<'_>, count: usize) -> Array1<f32> {
    let network = Network::sorting(rows.len());
    let mut out = vec![0.0f32; rows.dim()];
    network::for_each_chunk(
        rows,
        &network,
        #[inline(always)]
        |start, width, wires| {
            for (lane, slot) in out[start..start + width].iter_mut().enumerate() {
                *slot = mean_near_median(wires, count, lane);
            }
        },
    );
    Array1::from_vec(out)
}

/// In one lane of sorted `wires`, the mean of the `count` values closest to their median: the
/// window grows from the middle, taking the nearer neighbour each time (the lower one on ties).
fn mean_near_median(wires: &[Lanes], count: usize, lane: usize) -> f32 {
    let len = wires.len();
    let value = |index: usize| wires[index][lane];
    let median = if len % 2 == 1 {
        value(len / 2)
    } else {
        network::midpoint(value(len / 2 - 1), value(len / 2))
    };
    // The window is wires[low..high].
    let (mut low, mut high) = (len / 2, len / 2);
    let mut sum = 0.0f32;
    for _ in 0..count {
        let take_low = if low == 0 {
            false
        } else if high == len {
            true
        } else {
            median - value(low - 1) <= value(high) - median
        };
        if take_low {
            low -= 1;
            sum += value(low);
        } else {
            sum += value(high);
            high += 1;
        }
    }
    sum / count as f32
}
