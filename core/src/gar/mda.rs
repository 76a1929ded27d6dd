//! Minimum-Diameter Averaging (MDA), ByzSGD's gradient rule (El-Mhamdi et al., PODC 2020;
//! PAPER.md §4): among all subsets S of `n − f` inputs, take one minimizing the diameter
//! max_{i,j∈S} ‖xᵢ − xⱼ‖, and output the mean of S.
//!
//! Exact, without enumerating the C(n, f) subsets. Minimizing the diameter is a search over
//! thresholds: a subset has diameter ≤ τ iff it is a clique of the graph G_τ joining inputs at
//! distance ≤ τ. The optimal diameter is one of the O(n²) pairwise distances, and "G_τ has a
//! clique of size n − f" is monotone in τ, so a binary search over the sorted distances needs
//! O(log n) clique searches. Each search is a branch and bound on bitsets: vertices of degree
//! `< n − f − 1` are peeled off first (k-core), and a branch is cut as soon as the chosen
//! vertices plus a greedy colouring bound of the remaining candidates cannot reach `n − f`.
//! At n = 31, f = 10 (C(31, 10) ≈ 4.4·10⁷ subsets) this takes well under a millisecond.
//!
//! Ties (PAPER.md §10.2 asks for a deterministic choice): they are structural, not rare — any
//! subset that keeps the farthest pair of the best subset and adds no farther pair has the same
//! diameter. The search tries vertices in a fixed order and returns the lexicographically first
//! optimal subset in that order. [`super::aggregate`] orders the inputs by their contents
//! (lexicographically, then by index for identical vectors), so the choice is reproducible and
//! does not depend on the order in which inputs arrive; [`min_diameter_subset`], which sees only
//! distances, uses index order (lowest indices win).
//!
//! Non-finite inputs: non-finite (or overflowing) distances are +∞ and never join G_τ, so a
//! subset with a non-finite distance is never chosen (Garfield's convention). If no subset of
//! `n − f` inputs has a finite diameter, more than `f` inputs are non-finite and the rule returns
//! [`GarError::NoFiniteChoice`].
//!
//! Guarantee (PAPER.md §4): the honest inputs number at least `n − f`, so the chosen diameter is
//! at most the honest diameter D; the chosen subset holds at least one honest input, hence every
//! chosen input, and the output, lies within D of every chosen honest input.
//!
//! Bound `n ≥ 2f + 1`, and `n ≤` [`MAX_INPUTS`] (bitset width). Cost O(n²·d) for the distances,
//! plus the search, worst-case exponential in f but pruned hard in practice.

use ndarray::{Array1, Array2};

use super::{GarError, Rule, average, distances, rows::Rows};

/// Largest `n` MDA accepts: vertex sets are `u128` bitsets.
pub(crate) const MAX_INPUTS: usize = 128;

type Bits = u128;

/// MDA on validated rows with `2f + 1 ≤ n ≤ MAX_INPUTS`. Returns the mean of the chosen inputs
/// and their sorted indices.
pub(crate) fn mda(rows: &Rows<'_>, f: usize) -> Result<(Array1<f32>, Vec<usize>), GarError> {
    let n = rows.len();
    let order = rows.content_order();
    let choose = |distances: &Array2<f64>| {
        // Search in content order, so ties go to the lexicographically smallest vectors.
        let relabeled = Array2::from_shape_fn((n, n), |(a, b)| distances[[order[a], order[b]]]);
        select(&relabeled, n - f).map(|chosen| {
            let mut chosen: Vec<usize> = chosen.into_iter().map(|a| order[a]).collect();
            chosen.sort_unstable();
            chosen
        })
    };
    // The subset chosen on the first coordinates is summed during the distance pass; it is
    // almost always the final one, which then costs no second pass (see `distances::Guess`).
    let (distances, guess) = distances::sq_distances_guessing(rows, choose);
    let selected = choose(&distances).ok_or(GarError::NoFiniteChoice {
        rule: Rule::Mda,
        n,
        f,
    })?;
    let value = guess
        .and_then(|guess| guess.mean_if(rows, &selected))
        .unwrap_or_else(|| average::mean_of(rows, &selected));
    Ok((value, selected))
}

/// The minimum-diameter subset of `size` points given their `n × n` distance matrix (squared or
/// not: only the order of distances matters): sorted indices, lexicographically smallest among
/// ties, or `Ok(None)` if every such subset has a non-finite (or NaN) distance. Errors if the
/// matrix is not square, `n > 128` (the bitset width), or `size > n`.
pub fn min_diameter_subset(
    distances: &Array2<f64>,
    size: usize,
) -> Result<Option<Vec<usize>>, GarError> {
    let (n, columns) = distances.dim();
    if n != columns {
        return Err(GarError::DimensionMismatch {
            index: 1,
            expected: n,
            found: columns,
        });
    }
    if n > MAX_INPUTS {
        return Err(GarError::TooManyInputs {
            rule: Rule::Mda,
            n,
            max: MAX_INPUTS,
        });
    }
    if size > n {
        return Err(GarError::InvalidParameter {
            name: "subset size",
            value: size.to_string(),
            expected: "a subset size of at most the number of points",
        });
    }
    Ok(select(distances, size))
}

/// [`min_diameter_subset`] on an already checked matrix.
fn select(distances: &Array2<f64>, size: usize) -> Option<Vec<usize>> {
    let n = distances.nrows();
    if size <= 1 {
        // No pair, diameter 0: the lowest indices win the tie.
        return Some((0..size).collect());
    }
    let mut thresholds: Vec<f64> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| distances[[i, j]].max(distances[[j, i]]))
        .filter(|distance| distance.is_finite())
        .collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    let feasible = |threshold: f64| find_clique(&adjacency(distances, threshold), size);
    // Smallest threshold with a clique of `size`: the optimal diameter.
    let (mut low, mut high) = (0, thresholds.len());
    while low < high {
        let middle = low + (high - low) / 2;
        if feasible(thresholds[middle]).is_some() {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let clique = feasible(*thresholds.get(low)?)?;
    Some((0..n).filter(|&vertex| clique & bit(vertex) != 0).collect())
}

fn bit(vertex: usize) -> Bits {
    1 << vertex
}

/// Neighbour sets of G_τ: i ~ j iff d(i, j) ≤ τ in both directions (NaN never qualifies).
fn adjacency(distances: &Array2<f64>, threshold: f64) -> Vec<Bits> {
    let n = distances.nrows();
    (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| {
                    j != i && distances[[i, j]] <= threshold && distances[[j, i]] <= threshold
                })
                .fold(0, |set, j| set | bit(j))
        })
        .collect()
}

/// The lexicographically smallest clique of `size ≥ 2` vertices, as a bitset, if any.
fn find_clique(adjacency: &[Bits], size: usize) -> Option<Bits> {
    let mut alive: Bits = adjacency
        .iter()
        .enumerate()
        .fold(0, |set, (vertex, _)| set | bit(vertex));
    // k-core peeling: a vertex with fewer than size − 1 live neighbours is in no such clique.
    loop {
        let before = alive;
        let mut remaining = alive;
        while remaining != 0 {
            let vertex = remaining.trailing_zeros() as usize;
            remaining &= remaining - 1;
            if ((adjacency[vertex] & alive).count_ones() as usize) < size - 1 {
                alive &= !bit(vertex);
            }
        }
        if alive == before {
            break;
        }
    }
    let mut clique = 0;
    extend(adjacency, alive, 0, size, &mut clique).then_some(clique)
}

/// Depth-first branch and bound: `clique` holds `chosen` vertices, all adjacent to every vertex
/// of `candidates` (which are all higher than the chosen ones). Trying the lowest candidate
/// first, and including it before excluding it, visits cliques in lexicographic order.
fn extend(
    adjacency: &[Bits],
    mut candidates: Bits,
    chosen: usize,
    size: usize,
    clique: &mut Bits,
) -> bool {
    if chosen == size {
        return true;
    }
    if chosen + colour_bound(adjacency, candidates, size - chosen) < size {
        return false;
    }
    while candidates != 0 {
        if chosen + (candidates.count_ones() as usize) < size {
            return false;
        }
        let vertex = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        *clique |= bit(vertex);
        if extend(
            adjacency,
            candidates & adjacency[vertex],
            chosen + 1,
            size,
            clique,
        ) {
            return true;
        }
        *clique &= !bit(vertex);
    }
    false
}

/// Number of colours of a greedy colouring of `set` (an upper bound on its largest clique, since
/// each colour class is independent), counting no further than `enough`.
fn colour_bound(adjacency: &[Bits], set: Bits, enough: usize) -> usize {
    let mut uncoloured = set;
    let mut colours = 0;
    while uncoloured != 0 && colours < enough {
        colours += 1;
        let mut available = uncoloured;
        while available != 0 {
            let vertex = available.trailing_zeros() as usize;
            uncoloured &= !bit(vertex);
            available &= !(bit(vertex) | adjacency[vertex]);
        }
    }
    colours
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::select;

    #[test]
    fn all_equidistant_points_tie_to_the_lowest_indices() {
        let distances = Array2::from_shape_fn((6, 6), |(i, j)| if i == j { 0.0 } else { 1.0 });
        assert_eq!(select(&distances, 4), Some(vec![0, 1, 2, 3]));
    }

    #[test]
    fn infinite_distances_are_never_chosen() {
        // Point 0 is infinitely far from everyone: the only finite triple is {1, 2, 3}.
        let distances = Array2::from_shape_fn((4, 4), |(i, j)| match (i, j) {
            _ if i == j => 0.0,
            (0, _) | (_, 0) => f64::INFINITY,
            _ => 2.0,
        });
        assert_eq!(select(&distances, 3), Some(vec![1, 2, 3]));
        assert_eq!(select(&distances, 4), None);
    }

    #[test]
    fn nan_distances_count_as_missing_edges() {
        let mut distances = Array2::from_shape_fn((3, 3), |(i, j)| if i == j { 0.0 } else { 1.0 });
        distances[[0, 1]] = f64::NAN;
        distances[[1, 0]] = f64::NAN;
        assert_eq!(select(&distances, 2), Some(vec![0, 2]));
    }
}
