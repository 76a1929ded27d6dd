//! Bulyan over Krum (El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed
//! Learning in Byzantium", ICML 2018, Algorithm 1).
//!
//! Phase 1: θ = n − 2f inputs are chosen by applying Krum repeatedly, each time to the inputs not
//! yet chosen (scores recomputed over the remaining set with the same f, over its
//! `|remaining| − f − 2` nearest neighbours, but at least 1). Phase 2: per coordinate, the mean of the
//! β = θ − 2f chosen values closest to their median (Meamed on the chosen set).
//!
//! Guarantee tested: among the θ ≥ 2f + 3 chosen inputs at most f are Byzantine, so per
//! coordinate the median m lies within the range [lo, hi] (width w) of the chosen honest values,
//! every value of the β-window lies within w of m, and the output lies in
//! [lo − min(f, β)·w/β, hi + min(f, β)·w/β] ⊆ [lo − w, hi + w] for the honest inputs' range.
//! Non-finite inputs are never chosen in phase 1 while `n − f` finite inputs exist (see
//! [`super::krum`]).
//!
//! Bound `n ≥ 4f + 3`; cost O(n²·d) for the distances, O(θ·n² log n) for phase 1 and
//! O(θ log² θ · d) for phase 2.

use ndarray::Array1;

use super::{GarError, Rule, distances, krum, meamed, rows::Rows};

/// Bulyan on validated rows with `n ≥ 4f + 3`. Returns the aggregate and the sorted indices of
/// the θ inputs chosen in phase 1.
pub(crate) fn bulyan(rows: &Rows<'_>, f: usize) -> Result<(Array1<f32>, Vec<usize>), GarError> {
    let n = rows.len();
    let theta = n - 2 * f;
    let beta = theta - 2 * f;
    let distances = distances::sq_distances(rows);
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut selected = Vec::with_capacity(theta);
    while selected.len() < theta {
        // The last iterations run Krum on fewer than 2f + 3 inputs, where |R| − f − 2 would be
        // 0 and every score would tie (the choice would fall to the lowest index, possibly a
        // non-finite input): score against at least the nearest remaining input.
        let neighbours = remaining.len().saturating_sub(f + 2).max(1);
        let scores = krum::scores(&distances, &remaining, neighbours);
        let best = krum::best(rows, &remaining, &scores, 1, Rule::Bulyan, f)?;
        selected.push(remaining.remove(best[0]));
    }
    selected.sort_unstable();
    let value = meamed::around_median(&rows.subset(&selected), beta);
    Ok((value, selected))
}
