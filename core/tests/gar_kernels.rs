//! The vectorized kernels against plain reference implementations: the coordinate-wise order
//! statistics (compile-time register networks for n ≤ 32, run-time networks above), the
//! distance kernel (blocks and tails), and the running sum MDA and Multi-Krum collect during
//! the distance pass (bit-identical to averaging the chosen inputs, whether or not the early
//! guess was right), plus the pre-aggregators.

// Exact float comparisons are intended: results must match references bit for bit, and the
// approximate ones spell out their tolerance.
#![allow(clippy::float_cmp)]

use byzsgd_core::gar::{self, GarConfig, PreAggregator, Rule};
use ndarray::{Array1, ArrayView1};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn random_rows(rng: &mut StdRng, n: usize, d: usize, non_finite: bool) -> Vec<Array1<f32>> {
    (0..n)
        .map(|_| {
            Array1::from_shape_fn(d, |_| match rng.random_range(0..40) {
                0 if non_finite => f32::NAN,
                1 if non_finite => f32::INFINITY,
                2 if non_finite => f32::NEG_INFINITY,
                3 => 0.0,
                4 => -0.0,
                _ => rng.random_range(-10.0f32..10.0),
            })
        })
        .collect()
}

fn views(rows: &[Array1<f32>]) -> Vec<ArrayView1<'_, f32>> {
    rows.iter().map(|row| row.view()).collect()
}

/// One coordinate's values sorted with NaN as +∞, as the rules define it.
fn sorted_column(rows: &[Array1<f32>], c: usize) -> Vec<f32> {
    let mut column: Vec<f32> = rows
        .iter()
        .map(|row| {
            if row[c].is_nan() {
                f32::INFINITY
            } else {
                row[c]
            }
        })
        .collect();
    column.sort_by(f32::total_cmp);
    column
}

fn midpoint(a: f32, b: f32) -> f32 {
    let sum = a + b;
    if sum.is_finite() {
        sum * 0.5
    } else {
        a * 0.5 + b * 0.5
    }
}

fn same(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn median_matches_a_per_coordinate_sort_for_every_n_and_tail() {
    let mut rng = StdRng::seed_from_u64(1);
    for n in 1..=40 {
        for d in [1, 7, 16, 33, 100] {
            let rows = random_rows(&mut rng, n, d, true);
            let median = gar::coordinate_median(&views(&rows)).unwrap();
            for c in 0..d {
                let column = sorted_column(&rows, c);
                let expected = if n % 2 == 1 {
                    column[n / 2]
                } else {
                    midpoint(column[n / 2 - 1], column[n / 2])
                };
                assert!(
                    same(median[c], expected),
                    "n = {n}, d = {d}, c = {c}: {} vs {expected}",
                    median[c]
                );
            }
        }
    }
}

#[test]
fn trimmed_mean_matches_a_per_coordinate_sort_for_every_n_and_f() {
    let mut rng = StdRng::seed_from_u64(2);
    for n in 1..=40 {
        for f in [0, 1.min((n - 1) / 2), (n - 1) / 3, (n - 1) / 2] {
            let rows = random_rows(&mut rng, n, 37, false);
            let result =
                gar::aggregate(&GarConfig::new(Rule::TrimmedMean, f), &views(&rows)).unwrap();
            for c in 0..37 {
                let column = sorted_column(&rows, c);
                let sum: f32 = column[f..n - f].iter().fold(0.0, |total, &x| total + x);
                let expected = sum * (1.0 / (n - 2 * f) as f32);
                assert!(same(result.value[c], expected), "n = {n}, f = {f}, c = {c}");
            }
        }
    }
}

#[test]
fn distances_match_a_direct_f64_computation() {
    let mut rng = StdRng::seed_from_u64(3);
    // d spans one partial SIMD vector, several, and several blocks with a tail.
    for (n, d) in [(2, 1), (5, 17), (9, 300), (19, 20_011), (33, 1_000)] {
        let mut rows = random_rows(&mut rng, n, d, false);
        // A large common offset: the direct formula must not lose the small differences.
        for row in &mut rows {
            row.mapv_inplace(|x| x + 1000.0);
        }
        let distances = gar::pairwise_sq_distances(&views(&rows)).unwrap();
        for i in 0..n {
            assert_eq!(distances[[i, i]], 0.0);
            for j in 0..n {
                let exact: f64 = rows[i]
                    .iter()
                    .zip(&rows[j])
                    .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                    .sum();
                let error = (distances[[i, j]] - exact).abs();
                assert!(
                    error <= 1e-5 * exact,
                    "n = {n}, d = {d}, ({i}, {j}): {} vs {exact}",
                    distances[[i, j]]
                );
            }
        }
    }
}

#[test]
fn non_finite_rows_have_infinite_distances_and_leave_others_intact() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut rows = random_rows(&mut rng, 6, 50, false);
    rows[2][7] = f32::NAN;
    rows[4][0] = f32::INFINITY;
    rows[5][9] = 1e30;
    let distances = gar::pairwise_sq_distances(&views(&rows)).unwrap();
    for i in 0..6 {
        for j in 0..6 {
            let poisoned = i != j && [2, 4, 5].iter().any(|&bad| bad == i || bad == j);
            assert_eq!(distances[[i, j]] == f64::INFINITY, poisoned, "({i}, {j})");
        }
    }
}

/// The mean of `rows[selected]` as `Rule::Average` computes it (same order, same rounding).
fn average_of(rows: &[Array1<f32>], selected: &[usize]) -> Array1<f32> {
    let chosen: Vec<ArrayView1<'_, f32>> = selected.iter().map(|&k| rows[k].view()).collect();
    gar::aggregate(&GarConfig::new(Rule::Average, 0), &chosen)
        .expect("averaging a non-empty selection works")
        .value
}

#[test]
fn selecting_rules_average_exactly_the_rows_they_select() {
    let mut rng = StdRng::seed_from_u64(5);
    let d = 100_003;
    // Rows 0..6 are a tight cluster; 7 and 8 are far away everywhere (the early guess holds).
    let center: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut rows: Vec<Array1<f32>> = (0..9)
        .map(|k| {
            let spread = if k < 7 { 0.1 } else { 3.0 };
            center
                .iter()
                .map(|&c| c + spread * rng.random_range(-1.0f32..1.0))
                .collect()
        })
        .collect();
    let check = |rows: &[Array1<f32>], expected: &[usize]| {
        for rule in [Rule::Mda, Rule::MultiKrum] {
            let result = gar::aggregate(&GarConfig::new(rule, 2), &views(rows)).unwrap();
            assert_eq!(result.selected, expected, "{rule}");
            let direct = average_of(rows, &result.selected);
            assert!(
                result
                    .value
                    .iter()
                    .zip(&direct)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{rule} differs from averaging its selection"
            );
        }
    };
    check(&rows, &[0, 1, 2, 3, 4, 5, 6]);
    // Now row 8 sits in the cluster and row 3 leaves it, but only after the first tenth of the
    // coordinates: the early guess is wrong and the result must still be exact.
    let cut = d / 10;
    for c in cut..d {
        rows[8][c] = center[c];
        rows[3][c] = center[c] + 5.0;
    }
    check(&rows, &[0, 1, 2, 4, 5, 6, 8]);
}

#[test]
fn norm_clipping_caps_norms_and_keeps_directions() {
    let rows = vec![
        Array1::from(vec![3.0f32, 4.0]),
        Array1::from(vec![0.3f32, 0.4]),
        Array1::from(vec![f32::NAN, 1.0]),
    ];
    let config = GarConfig {
        pre: vec![PreAggregator::NormClip { max_norm: 1.0 }],
        ..GarConfig::new(Rule::Average, 0)
    };
    let clipped = gar::aggregate(&config, &views(&rows[..2])).unwrap().value;
    // (0.6, 0.8) and (0.3, 0.4) average to (0.45, 0.6).
    assert!(
        (clipped[0] - 0.45).abs() < 1e-6 && (clipped[1] - 0.6).abs() < 1e-6,
        "{clipped}"
    );
    // A non-finite input passes through for the rule to handle.
    assert!(gar::aggregate(&config, &views(&rows)).unwrap().value[0].is_nan());
}

#[test]
fn bucketing_is_seeded_and_reports_original_inputs() {
    let mut rng = StdRng::seed_from_u64(6);
    let rows = random_rows(&mut rng, 10, 8, false);
    let config = |seed| GarConfig {
        pre: vec![PreAggregator::Bucketing { size: 3 }],
        seed,
        ..GarConfig::new(Rule::Krum, 0)
    };
    let first = gar::aggregate(&config(7), &views(&rows)).unwrap();
    assert_eq!(first, gar::aggregate(&config(7), &views(&rows)).unwrap());
    // Krum keeps one bucket: the 3 or 1 inputs in it.
    assert!(
        matches!(first.selected.len(), 1 | 3),
        "{:?}",
        first.selected
    );
    let differs =
        (0..20).any(|seed| gar::aggregate(&config(seed), &views(&rows)).unwrap() != first);
    assert!(differs, "the seed never changed the buckets");
    // Buckets of one input are the inputs themselves.
    let single = GarConfig {
        pre: vec![PreAggregator::Bucketing { size: 1 }],
        ..GarConfig::new(Rule::Median, 2)
    };
    assert_eq!(
        gar::aggregate(&single, &views(&rows)).unwrap().value,
        gar::aggregate(&GarConfig::new(Rule::Median, 2), &views(&rows))
            .unwrap()
            .value
    );
}

#[test]
fn nnm_mixes_each_input_with_its_nearest_neighbours() {
    // On a line: {0, 1, 2, 10, 11}; f = 1, so each input becomes the mean of its 4 nearest.
    let rows: Vec<Array1<f32>> = [0.0f32, 1.0, 2.0, 10.0, 11.0]
        .iter()
        .map(|&x| Array1::from(vec![x]))
        .collect();
    let config = GarConfig {
        pre: vec![PreAggregator::Nnm],
        ..GarConfig::new(Rule::Krum, 1)
    };
    let result = gar::aggregate(&config, &views(&rows)).unwrap();
    // Mixed: 0→{0,1,2,10}=3.25, 1→3.25, 2→{2,1,0,10}=3.25, 10→{10,11,2,1}=6, 11→6.
    // Krum (k = 2 neighbours) picks a 3.25 (score 0), the lowest index: input 0.
    assert_eq!(result.selected, vec![0]);
    assert_eq!(result.value[0], 3.25);
}
