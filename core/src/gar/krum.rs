//! Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017) and Multi-Krum (El Mhamdi,
//! Guerraoui, Rouault, ICML 2018).
//!
//! Each input i gets the score s(i) = Σ ‖xᵢ − xⱼ‖² over its `n − f − 2` nearest other inputs.
//! Krum returns the input with the lowest score; Multi-Krum the mean of the `m` lowest-scored
//! inputs (`m = n − f` by default). Ties go to the lexicographically smaller vector, so results
//! are reproducible and do not depend on the order of the inputs.
//!
//! Non-finite inputs: their distances are +∞ ([`super::distances`]), so their scores are +∞.
//! With at least `n − f` finite inputs, every finite input has `n − f − 1 ≥ n − f − 2` finite
//! neighbours and a finite score, so a non-finite input is never selected. If a selected score
//! is still +∞, more than `f` inputs are non-finite and the rule returns
//! [`GarError::NoFiniteChoice`].
//!
//! Bound `n ≥ 2f + 3`; cost O(n²·d) for the distances plus O(n² log n) for the scores.

use ndarray::{Array1, Array2};

use super::{GarError, Rule, average, distances, rows::Rows};

/// Krum scores of every input given the `n × n` squared-distance matrix (see
/// [`super::pairwise_sq_distances`]): the sum of the `n − f − 2` smallest distances from each
/// input to the others (0 when `n ≤ f + 2`; Krum itself needs `n ≥ 2f + 3`), NaN counted as +∞.
/// Errors if the matrix is not square.
pub fn krum_scores(distances: &Array2<f64>, f: usize) -> Result<Vec<f64>, GarError> {
    let (n, columns) = distances.dim();
    if n != columns {
        return Err(GarError::DimensionMismatch {
            index: 1,
            expected: n,
            found: columns,
        });
    }
    let members: Vec<usize> = (0..n).collect();
    Ok(scores(distances, &members, n.saturating_sub(f + 2)))
}

/// Scores of `members` counting only distances to other members, over their `neighbours`
/// nearest ones. NaN distances count as +∞.
pub(crate) fn scores(distances: &Array2<f64>, members: &[usize], neighbours: usize) -> Vec<f64> {
    let mut row = Vec::with_capacity(members.len());
    members
        .iter()
        .map(|&i| {
            row.clear();
            row.extend(members.iter().filter(|&&j| j != i).map(|&j| {
                let distance = distances[[i, j]];
                if distance.is_nan() {
                    f64::INFINITY
                } else {
                    distance
                }
            }));
            let take = neighbours.min(row.len());
            if take == 0 {
                return 0.0;
            }
            row.select_nth_unstable_by(take - 1, f64::total_cmp);
            row[..take].iter().sum()
        })
        .collect()
}

/// Positions (into `scores` and `members`) of the `m` lowest scores, or
/// [`GarError::NoFiniteChoice`] if one of them is +∞. Equal scores are ordered by the vectors
/// themselves (lexicographically, NaN last), then by position, so the choice does not depend on
/// the order of the inputs: ties are structural when a score counts a single neighbour (two
/// mutual nearest neighbours score the same).
pub(crate) fn best(
    rows: &Rows<'_>,
    members: &[usize],
    scores: &[f64],
    m: usize,
    rule: Rule,
    f: usize,
) -> Result<Vec<usize>, GarError> {
    let content = rows.content_order();
    let mut rank = vec![0; rows.len()];
    for (position, &index) in content.iter().enumerate() {
        rank[index] = position;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[a]
            .total_cmp(&scores[b])
            .then(rank[members[a]].cmp(&rank[members[b]]))
    });
    order.truncate(m);
    if order.iter().any(|&position| !scores[position].is_finite()) {
        return Err(GarError::NoFiniteChoice {
            rule,
            n: scores.len(),
            f,
        });
    }
    Ok(order)
}

/// Multi-Krum with `1 ≤ m ≤ n − f` on validated rows with `n ≥ 2f + 3` (Krum is `m = 1`,
/// reported as `rule`). Returns the aggregate and the sorted selected indices.
pub(crate) fn multi_krum(
    rows: &Rows<'_>,
    f: usize,
    m: usize,
    rule: Rule,
) -> Result<(Array1<f32>, Vec<usize>), GarError> {
    let n = rows.len();
    let members: Vec<usize> = (0..n).collect();
    let choose = |distances: &Array2<f64>| {
        let scores = scores(distances, &members, n - f - 2);
        best(rows, &members, &scores, m, rule, f).map(|mut chosen| {
            chosen.sort_unstable();
            chosen
        })
    };
    // With m > 1, the inputs chosen on the first coordinates are summed during the distance
    // pass; they are almost always the final ones (see `distances::Guess`).
    let (distances, guess) =
        distances::sq_distances_guessing(
            rows,
            |partial| {
                if m > 1 { choose(partial).ok() } else { None }
            },
        );
    let selected = choose(&distances)?;
    let value = if let [only] = selected[..] {
        // Krum returns the chosen input itself, bit for bit.
        Array1::from_vec(rows.row(only).to_vec())
    } else {
        guess
            .and_then(|guess| guess.mean_if(rows, &selected))
            .unwrap_or_else(|| average::mean_of(rows, &selected))
    };
    Ok((value, selected))
}
