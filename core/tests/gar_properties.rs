//! Property tests of every aggregation rule through the public API (`gar::aggregate`):
//! permutation invariance, identity on identical inputs, and robustness to at most `f`
//! arbitrary inputs (NaN, ±∞, huge or merely misleading values) with the exact bound each rule
//! guarantees, stated next to its test.

// Exact float comparisons are intended: results must match references bit for bit, and the
// approximate ones spell out their tolerance.
#![allow(clippy::float_cmp)]

use byzsgd_core::gar::{self, Aggregation, GarConfig, Rule};
use ndarray::ArrayView1;
use proptest::prelude::*;

/// `n` inputs of which the ones flagged in `byzantine` (at most `f`) are arbitrary.
#[derive(Debug, Clone)]
struct Case {
    f: usize,
    rows: Vec<Vec<f32>>,
    byzantine: Vec<bool>,
}

impl Case {
    fn honest(&self) -> Vec<&[f32]> {
        self.rows
            .iter()
            .zip(&self.byzantine)
            .filter(|(_, byzantine)| !**byzantine)
            .map(|(row, _)| row.as_slice())
            .collect()
    }

    fn n(&self) -> usize {
        self.rows.len()
    }
}

fn aggregate(rule: Rule, f: usize, rows: &[Vec<f32>]) -> Aggregation {
    let views: Vec<ArrayView1<'_, f32>> = rows.iter().map(ArrayView1::from).collect();
    gar::aggregate(&GarConfig::new(rule, f), &views).expect("inputs satisfy the rule's bound")
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn diameter(rows: &[&[f32]]) -> f64 {
    let mut largest = 0.0f64;
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            largest = largest.max(distance(a, b));
        }
    }
    largest
}

/// Per coordinate, the honest values' minimum and maximum.
fn honest_range(case: &Case, coordinate: usize) -> (f32, f32) {
    let values = case.honest().into_iter().map(|row| row[coordinate]);
    let low = values.clone().fold(f32::INFINITY, f32::min);
    let high = values.fold(f32::NEG_INFINITY, f32::max);
    (low, high)
}

fn has_non_finite(row: &[f32]) -> bool {
    row.iter().any(|x| !x.is_finite())
}

/// A Byzantine coordinate: non-finite, huge, or plausible.
fn byzantine_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(1e30f32),
        Just(-3e38f32),
        -1e6f32..1e6f32,
        -120f32..120f32,
    ]
}

/// Inputs for `rule`: `f ≤ max_f`, `n` from the rule's bound to 4 above it, `d ≤ 40`, honest
/// values in [−100, 100], and up to `f` Byzantine rows at random positions.
fn case(rule: Rule, max_f: usize) -> impl Strategy<Value = Case> {
    (0..=max_f)
        .prop_flat_map(move |f| {
            let low = rule.min_inputs(f);
            (Just(f), low..=low + 4, 1..=40usize, 0..=f)
        })
        .prop_flat_map(|(f, n, d, b)| {
            let honest =
                proptest::collection::vec(proptest::collection::vec(-100f32..100f32, d), n - b);
            let byzantine =
                proptest::collection::vec(proptest::collection::vec(byzantine_value(), d), b);
            let order = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
            (Just(f), honest, byzantine, order)
        })
        .prop_map(|(f, honest, byzantine, order)| {
            let b = byzantine.len();
            let mut rows = vec![Vec::new(); order.len()];
            let mut flags = vec![false; order.len()];
            for (k, row) in byzantine.into_iter().chain(honest).enumerate() {
                rows[order[k]] = row;
                flags[order[k]] = k < b;
            }
            Case {
                f,
                rows,
                byzantine: flags,
            }
        })
}

/// Honest-only inputs and a permutation of them.
fn permuted(rule: Rule) -> impl Strategy<Value = (usize, Vec<Vec<f32>>, Vec<usize>)> {
    (0..=2usize)
        .prop_flat_map(move |f| {
            let low = rule.min_inputs(f);
            (Just(f), low..=low + 4, 1..=40usize)
        })
        .prop_flat_map(|(f, n, d)| {
            let rows = proptest::collection::vec(proptest::collection::vec(-100f32..100f32, d), n);
            let order = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
            (Just(f), rows, order)
        })
}

fn close(a: f32, b: f32, scale: f32) -> bool {
    a == b || (a - b).abs() <= 1e-5 * scale.max(1.0)
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(64)
}

proptest! {
    #![proptest_config(config())]

    /// Reordering the inputs changes nothing but the order of floating-point additions: values
    /// match to 1e-5 relative (exactly for the order statistics), and a selecting rule keeps
    /// the same inputs. Continuous random inputs make ties, the only other source of change,
    /// vanishingly unlikely.
    #[test]
    fn every_rule_is_permutation_invariant(
        (rule, (f, rows, order)) in proptest::sample::select(Rule::ALL.to_vec())
            .prop_flat_map(|rule| (Just(rule), permuted(rule))),
    ) {
        let original = aggregate(rule, f, &rows);
        let shuffled_rows: Vec<Vec<f32>> = order.iter().map(|&k| rows[k].clone()).collect();
        let shuffled = aggregate(rule, f, &shuffled_rows);
        let scale = rows.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()));
        for (a, b) in original.value.iter().zip(&shuffled.value) {
            prop_assert!(close(*a, *b, scale), "{rule}: {a} vs {b}");
        }
        let mut mapped: Vec<usize> = shuffled.selected.iter().map(|&k| order[k]).collect();
        mapped.sort_unstable();
        prop_assert_eq!(mapped, original.selected, "{}", rule);
    }

    /// n copies of x aggregate to x (to 1e-5 relative for rules that average).
    #[test]
    fn every_rule_maps_identical_inputs_to_themselves(
        rule in proptest::sample::select(Rule::ALL.to_vec()),
        f in 0..=3usize,
        extra in 0..=3usize,
        x in proptest::collection::vec(-1e4f32..1e4f32, 1..=70),
    ) {
        let rows = vec![x.clone(); rule.min_inputs(f) + extra];
        let result = aggregate(rule, f, &rows);
        for (a, b) in result.value.iter().zip(&x) {
            prop_assert!(close(*a, *b, b.abs()), "{rule}: {a} vs {b}");
        }
    }

    /// Median and trimmed mean: with at most f arbitrary inputs and n ≥ 2f + 1, every output
    /// coordinate lies in the honest values' range for that coordinate. (Sorting puts at most f
    /// values, NaN counted as +∞, on each side of the honest ones; the median's ranks and the
    /// trimmed window are then bracketed by honest values.)
    #[test]
    fn median_and_trimmed_mean_stay_within_the_honest_range(
        rule in proptest::sample::select(vec![Rule::Median, Rule::TrimmedMean]),
        case in case(Rule::Median, 4),
    ) {
        let result = aggregate(rule, case.f, &case.rows);
        for (c, &value) in result.value.iter().enumerate() {
            let (low, high) = honest_range(&case, c);
            let slack = 1e-5 * low.abs().max(high.abs()).max(1.0);
            prop_assert!(value >= low - slack && value <= high + slack,
                "{rule}: coordinate {c} = {value} outside [{low}, {high}]");
        }
    }

    /// Meamed: the median m lies in the honest range [lo, hi] of width w; the n − f values
    /// closest to m are each within w of m (the ≥ n − f honest values are no farther), and at
    /// most f of them are Byzantine, so each coordinate lies in
    /// [lo − f·w/(n − f), hi + f·w/(n − f)]. (It can leave [lo, hi]: honest {0, 10}, Byzantine
    /// 11, f = 1 gives 10.5.)
    #[test]
    fn meamed_stays_within_its_widened_honest_range(case in case(Rule::Meamed, 4)) {
        let result = aggregate(Rule::Meamed, case.f, &case.rows);
        let share = case.f as f32 / (case.n() - case.f) as f32;
        for (c, &value) in result.value.iter().enumerate() {
            let (low, high) = honest_range(&case, c);
            let widen = share * (high - low);
            let slack = 1e-4 * low.abs().max(high.abs()).max(1.0);
            prop_assert!(value >= low - widen - slack && value <= high + widen + slack,
                "coordinate {c} = {value} outside [{low}, {high}] ± {widen}");
        }
    }

    /// Krum and Multi-Krum: an honest input's score is at most k·D² (k = n − f − 2 neighbours,
    /// D the honest diameter), and the m = n − f best scores are all at most that. A selected
    /// Byzantine input's k nearest neighbours include at least n − 2f − 1 honest inputs, so
    /// its nearest honest input is within D·√(k / (n − 2f − 1)). Non-finite inputs are never
    /// selected (at least n − f inputs are finite).
    #[test]
    fn krum_selects_inputs_close_to_an_honest_one(
        rule in proptest::sample::select(vec![Rule::Krum, Rule::MultiKrum]),
        case in case(Rule::Krum, 3),
    ) {
        let result = aggregate(rule, case.f, &case.rows);
        let honest = case.honest();
        let (n, f) = (case.n(), case.f);
        let bound = diameter(&honest) * ((n - f - 2) as f64 / (n - 2 * f - 1) as f64).sqrt();
        for &index in &result.selected {
            prop_assert!(!has_non_finite(&case.rows[index]), "{rule} selected non-finite {index}");
            let nearest = honest.iter().map(|h| distance(&case.rows[index], h)).fold(f64::INFINITY, f64::min);
            prop_assert!(nearest <= bound * (1.0 + 1e-4) + 1e-4,
                "{rule}: input {index} is {nearest} from the honest ones, bound {bound}");
        }
        if rule == Rule::Krum {
            prop_assert_eq!(result.value.to_vec(), case.rows[result.selected[0]].clone());
        }
    }

    /// MDA: the honest inputs number at least n − f, so the chosen subset's diameter is at most
    /// the honest diameter D; it holds at least n − 2f ≥ 1 honest inputs, so the output (a mean
    /// of points within D of each chosen honest input) is within D of every chosen honest
    /// input, and within (b/(n − f))·D of the chosen honest inputs' mean, b ≤ f being the chosen
    /// Byzantine ones (PAPER.md §4). Non-finite inputs are never chosen.
    #[test]
    fn mda_stays_within_the_honest_diameter(case in case(Rule::Mda, 4)) {
        let result = aggregate(Rule::Mda, case.f, &case.rows);
        let (n, f) = (case.n(), case.f);
        let big_d = diameter(&case.honest());
        let tolerance = |bound: f64| bound * (1.0 + 1e-4) + 1e-3;
        prop_assert_eq!(result.selected.len(), n - f);
        let chosen: Vec<&[f32]> = result.selected.iter().map(|&k| case.rows[k].as_slice()).collect();
        prop_assert!(chosen.iter().all(|row| !has_non_finite(row)));
        prop_assert!(diameter(&chosen) <= tolerance(big_d), "diameter {} > {big_d}", diameter(&chosen));
        let chosen_honest: Vec<&[f32]> = result.selected.iter()
            .filter(|&&k| !case.byzantine[k]).map(|&k| case.rows[k].as_slice()).collect();
        let output = result.value.to_vec();
        for h in &chosen_honest {
            prop_assert!(distance(&output, h) <= tolerance(big_d));
        }
        let b = n - f - chosen_honest.len();
        let d = output.len();
        let honest_mean: Vec<f32> = (0..d)
            .map(|c| chosen_honest.iter().map(|h| h[c]).sum::<f32>() / chosen_honest.len() as f32)
            .collect();
        let bound = b as f64 / (n - f) as f64 * big_d;
        prop_assert!(distance(&output, &honest_mean) <= tolerance(bound),
            "{} from the honest mean, bound {bound}", distance(&output, &honest_mean));
    }

    /// Bulyan: at most f of the θ = n − 2f inputs chosen by iterated Krum are Byzantine and
    /// θ ≥ 2f + 3, so per coordinate the median m of the chosen values lies in the honest range
    /// [lo, hi] (width w); the β = θ − 2f values closest to m are within w of m (at least β
    /// chosen honest values are), at most min(f, β) of them Byzantine, so each coordinate lies
    /// in [lo − min(f, β)·w/β, hi + min(f, β)·w/β].
    #[test]
    fn bulyan_stays_within_its_widened_honest_range(case in case(Rule::Bulyan, 2)) {
        let result = aggregate(Rule::Bulyan, case.f, &case.rows);
        let (n, f) = (case.n(), case.f);
        let beta = n - 4 * f;
        prop_assert_eq!(result.selected.len(), n - 2 * f);
        prop_assert!(result.selected.iter().all(|&k| !has_non_finite(&case.rows[k])));
        let share = f.min(beta) as f32 / beta as f32;
        for (c, &value) in result.value.iter().enumerate() {
            let (low, high) = honest_range(&case, c);
            let widen = share * (high - low);
            let slack = 1e-4 * low.abs().max(high.abs()).max(1.0);
            prop_assert!(value >= low - widen - slack && value <= high + widen + slack,
                "coordinate {c} = {value} outside [{low}, {high}] ± {widen}");
        }
    }

    /// The geometric median and centered clipping give no per-coordinate guarantee, but they
    /// must not be poisoned: inputs at a non-finite distance get no weight, so with at most f
    /// arbitrary inputs the output stays finite.
    #[test]
    fn weighting_rules_stay_finite(
        rule in proptest::sample::select(vec![Rule::GeometricMedian, Rule::CenteredClipping]),
        case in case(Rule::GeometricMedian, 4),
    ) {
        let result = aggregate(rule, case.f, &case.rows);
        prop_assert!(result.value.iter().all(|x| x.is_finite()), "{rule}: {:?}", result.value);
        for (k, row) in case.rows.iter().enumerate() {
            if has_non_finite(row) {
                prop_assert!(!result.selected.contains(&k), "{rule} weighted non-finite input {k}");
            }
        }
    }
}
