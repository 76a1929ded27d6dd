//! The validated input of every rule: `n` rows of equal length `d` as plain slices.
//!
//! Rules loop over raw slices so the compiler can vectorize; a row that arrives as a strided
//! view is copied once here rather than making every kernel handle strides.

use std::borrow::Cow;

use ndarray::{Array1, ArrayView1};

use super::GarError;

/// `n ≥ 1` rows of the same length, each contiguous.
pub(crate) struct Rows<'a> {
    rows: Vec<Cow<'a, [f32]>>,
    dim: usize,
}

impl<'a> Rows<'a> {
    /// Validates that there is at least one input and that all have input 0's length.
    pub(crate) fn new(inputs: &[ArrayView1<'a, f32>]) -> Result<Self, GarError> {
        let first = inputs.first().ok_or(GarError::NoInputs)?;
        let dim = first.len();
        if let Some((index, row)) = inputs.iter().enumerate().find(|(_, row)| row.len() != dim) {
            return Err(GarError::DimensionMismatch {
                index,
                expected: dim,
                found: row.len(),
            });
        }
        let rows = inputs
            .iter()
            .map(|row| match row.to_slice() {
                Some(slice) => Cow::Borrowed(slice),
                None => Cow::Owned(row.to_vec()),
            })
            .collect();
        Ok(Self { rows, dim })
    }

    /// Borrows vectors produced inside this module (pre-aggregator outputs), which are
    /// non-empty and of equal length by construction.
    pub(crate) fn from_owned(vectors: &'a [Array1<f32>]) -> Self {
        let dim = vectors.first().map_or(0, Array1::len);
        let rows = vectors
            .iter()
            .map(|row| match row.as_slice() {
                Some(slice) => Cow::Borrowed(slice),
                None => Cow::Owned(row.to_vec()),
            })
            .collect();
        Self { rows, dim }
    }

    /// Number of rows `n`.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Length `d` of every row.
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Row `index` as a slice.
    pub(crate) fn row(&self, index: usize) -> &[f32] {
        &self.rows[index]
    }

    /// Row indices sorted by the rows' contents (lexicographically, with `f32::total_cmp`), then
    /// by index: an order of the inputs that does not depend on the order they were given in.
    pub(crate) fn content_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| {
            self.row(a)
                .iter()
                .zip(self.row(b))
                .map(|(x, y)| x.total_cmp(y))
                .find(|ordering| ordering.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        order
    }

    /// All rows, in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        self.rows.iter().map(|row| &**row)
    }
}

impl Rows<'_> {
    /// Coordinates `range` of every row, borrowed.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> Rows<'_> {
        Rows {
            rows: self
                .iter()
                .map(|row| Cow::Borrowed(&row[range.clone()]))
                .collect(),
            dim: range.len(),
        }
    }

    /// The rows listed in `indices`, borrowed.
    pub(crate) fn subset(&self, indices: &[usize]) -> Rows<'_> {
        Rows {
            rows: indices
                .iter()
                .map(|&index| Cow::Borrowed(self.row(index)))
                .collect(),
            dim: self.dim,
        }
    }
}
