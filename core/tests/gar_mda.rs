//! MDA's pruned subset search against brute force over all C(n, f) subsets, on small random
//! cases with many ties (integer coordinates) and with non-finite inputs. Ties go to the
//! lexicographically first optimal subset: in index order for `min_diameter_subset`, in the
//! order of the vectors' contents for `aggregate`.

// Exact float comparisons are intended: results must match references bit for bit, and the
// approximate ones spell out their tolerance.
#![allow(clippy::float_cmp)]

use byzsgd_core::gar::{self, GarConfig, GarError, Rule};
use ndarray::{Array2, ArrayView1};
use proptest::prelude::*;

/// Every subset of `size` indices out of `n`, in lexicographic order.
fn subsets(n: usize, size: usize) -> Vec<Vec<usize>> {
    fn extend(n: usize, size: usize, current: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if current.len() == size {
            out.push(current.clone());
            return;
        }
        let next = current.last().map_or(0, |&last| last + 1);
        for index in next..n {
            current.push(index);
            extend(n, size, current, out);
            current.pop();
        }
    }
    let mut out = Vec::new();
    extend(n, size, &mut Vec::new(), &mut out);
    out
}

/// The first (lexicographically smallest) subset of minimal finite diameter, if any.
fn brute_force(distances: &Array2<f64>, size: usize) -> Option<Vec<usize>> {
    let mut best: Option<(f64, Vec<usize>)> = None;
    for subset in subsets(distances.nrows(), size) {
        let mut diameter = 0.0f64;
        for (k, &i) in subset.iter().enumerate() {
            for &j in &subset[k + 1..] {
                let d = distances[[i, j]];
                diameter = if d.is_nan() {
                    f64::INFINITY
                } else {
                    diameter.max(d)
                };
            }
        }
        if diameter.is_finite()
            && best
                .as_ref()
                .is_none_or(|(smallest, _)| diameter < *smallest)
        {
            best = Some((diameter, subset));
        }
    }
    best.map(|(_, subset)| subset)
}

fn coordinate() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => (0..4).prop_map(|x| x as f32),
        2 => -50f32..50f32,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
    ]
}

fn rows() -> impl Strategy<Value = (usize, Vec<Vec<f32>>)> {
    (1..=11usize, 1..=4usize).prop_flat_map(|(n, d)| {
        let rows = proptest::collection::vec(proptest::collection::vec(coordinate(), d), n);
        (0..=(n - 1) / 2, rows)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mda_equals_brute_force((f, rows) in rows()) {
        let views: Vec<ArrayView1<'_, f32>> = rows.iter().map(ArrayView1::from).collect();
        let distances = gar::pairwise_sq_distances(&views).unwrap();
        let n = rows.len();
        let expected = brute_force(&distances, n - f);
        prop_assert_eq!(gar::min_diameter_subset(&distances, n - f).unwrap(), expected);
        // `aggregate` breaks ties in the order of the vectors' contents instead of indices.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            rows[a].iter().zip(&rows[b]).map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
        });
        let relabeled = Array2::from_shape_fn((n, n), |(a, b)| distances[[order[a], order[b]]]);
        let by_content = brute_force(&relabeled, n - f).map(|subset| {
            let mut subset: Vec<usize> = subset.into_iter().map(|a| order[a]).collect();
            subset.sort_unstable();
            subset
        });
        match (gar::aggregate(&GarConfig::new(Rule::Mda, f), &views), by_content) {
            (Ok(result), Some(subset)) => prop_assert_eq!(result.selected, subset),
            (Err(GarError::NoFiniteChoice { .. }), None) => {}
            (other, expected) => prop_assert!(false, "got {other:?}, expected {expected:?}"),
        }
    }
}

/// The search is exact where brute force is hopeless: 31 points with f = 10 (C(31, 10) ≈ 4.4·10⁷
/// subsets), checked against the known optimum of a planted cluster.
#[test]
fn mda_finds_a_planted_cluster_among_many_subsets() {
    let n = 31;
    let f = 10;
    // 21 points on a small circle (diameter 2) and 10 points spread far apart on a big one.
    let rows: Vec<Vec<f32>> = (0..n)
        .map(|k| {
            let angle = k as f32 * 0.7;
            let radius = if k % 3 == 1 && k / 3 < f {
                100.0 + k as f32
            } else {
                1.0
            };
            vec![radius * angle.cos(), radius * angle.sin()]
        })
        .collect();
    let views: Vec<ArrayView1<'_, f32>> = rows.iter().map(ArrayView1::from).collect();
    let result = gar::aggregate(&GarConfig::new(Rule::Mda, f), &views).unwrap();
    let expected: Vec<usize> = (0..n).filter(|k| !(k % 3 == 1 && k / 3 < f)).collect();
    assert_eq!(result.selected, expected);
}
