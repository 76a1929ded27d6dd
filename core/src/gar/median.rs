//! Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, ICML 2018), ByzSGD's model rule:
//! workers take it over the servers' models every step and servers over their peers' models at
//! gather (PAPER.md §11 item 3).
//!
//! Conventions (PAPER.md §10.2): an even count gives the mean of the two middle values (numpy's
//! convention, not torch's lower middle); NaN is ordered as +∞. Hence with `n ≥ 2f + 1` and at
//! most `f` non-finite inputs, every output coordinate lies within the finite inputs' range.
//!
//! Bound `n ≥ 2f + 1`; cost O(n log² n · d) comparisons, branch-free and vectorized through a
//! comparator network ([`super::order`]), one pass over the inputs.

use ndarray::{Array1, ArrayView1};

use super::{GarError, order, rows::Rows};

/// Coordinate-wise median of `inputs` (even count: mean of the two middle values; NaN ordered
/// as +∞). The same computation as [`super::aggregate`] with [`super::Rule::Median`], without
/// an `f` to check.
pub fn coordinate_median(inputs: &[ArrayView1<'_, f32>]) -> Result<Array1<f32>, GarError> {
    Ok(median(&Rows::new(inputs)?))
}

/// The median of validated rows.
pub(crate) fn median(rows: &Rows<'_>) -> Array1<f32> {
    order::reduce(rows, order::Median)
}
