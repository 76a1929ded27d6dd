//! Coordinate-wise trimmed mean (Yin, Chen, Ramchandran, Bartlett, ICML 2018): per coordinate,
//! drop the `f` largest and `f` smallest values and average the `n − 2f` others.
//!
//! NaN is ordered as +∞ (as for the median), so at most `f` non-finite inputs are always trimmed
//! and every output coordinate lies within the range of the kept, finite values.
//!
//! Bound `n ≥ 2f + 1`; cost O(n log² n · d) through a comparator network that only needs to
//! partition the values into {lowest f} / {middle n − 2f} / {highest f} ([`super::order`]); one
//! pass over the inputs.

use ndarray::Array1;

use super::{order, rows::Rows};

/// The trimmed mean of validated rows with `n ≥ 2f + 1`.
pub(crate) fn trimmed_mean(rows: &Rows<'_>, f: usize) -> Array1<f32> {
    order::reduce(rows, order::Trimmed { f })
}
