//! Every rule and pre-aggregator rejects too few inputs with an error naming its bound (never a
//! panic), accepts exactly its bound, and rejects bad parameters and shapes.

// Exact float comparisons are intended: results must match references bit for bit, and the
// approximate ones spell out their tolerance.
#![allow(clippy::float_cmp)]

use byzsgd_core::gar::{self, GarConfig, GarError, PreAggregator, Rule};
use ndarray::{Array1, ArrayView1};

fn inputs(n: usize, d: usize) -> Vec<Array1<f32>> {
    (0..n)
        .map(|k| Array1::from_shape_fn(d, |c| (k * 7 + c * 3) as f32 % 11.0))
        .collect()
}

fn run(config: &GarConfig, rows: &[Array1<f32>]) -> Result<gar::Aggregation, GarError> {
    let views: Vec<ArrayView1<'_, f32>> = rows.iter().map(|row| row.view()).collect();
    gar::aggregate(config, &views)
}

#[test]
fn every_rule_errors_below_its_bound_and_works_at_it() {
    for rule in Rule::ALL {
        for f in 0..=4 {
            let needed = rule.min_inputs(f);
            let config = GarConfig::new(rule, f);
            if needed > 1 {
                let error = run(&config, &inputs(needed - 1, 5)).unwrap_err();
                assert_eq!(
                    error,
                    GarError::TooFewInputs {
                        rule,
                        n: needed - 1,
                        f,
                        needed,
                        bound: rule.bound()
                    }
                );
                assert!(error.to_string().contains(rule.bound()), "{error}");
            }
            let result = run(&config, &inputs(needed, 5))
                .unwrap_or_else(|error| panic!("{rule} f = {f} n = {needed}: {error}"));
            assert_eq!(result.value.len(), 5);
        }
    }
}

#[test]
fn the_documented_bounds_hold() {
    assert_eq!(Rule::Krum.min_inputs(2), 7);
    assert_eq!(Rule::Bulyan.min_inputs(2), 11);
    assert_eq!(Rule::Mda.min_inputs(2), 5);
    assert_eq!(Rule::Median.min_inputs(2), 5);
    assert_eq!(Rule::Average.min_inputs(2), 1);
    assert_eq!(Rule::Bulyan.min_inputs(usize::MAX), usize::MAX);
}

#[test]
fn empty_and_ragged_inputs_are_errors() {
    let config = GarConfig::new(Rule::Median, 0);
    assert_eq!(run(&config, &[]).unwrap_err(), GarError::NoInputs);
    let rows = vec![Array1::zeros(3), Array1::zeros(3), Array1::zeros(4)];
    assert_eq!(
        run(&config, &rows).unwrap_err(),
        GarError::DimensionMismatch {
            index: 2,
            expected: 3,
            found: 4
        }
    );
}

#[test]
fn pre_aggregators_check_their_own_bound_and_shrink_n() {
    // NNM needs 2f + 1 inputs itself.
    let config = GarConfig {
        pre: vec![PreAggregator::Nnm],
        ..GarConfig::new(Rule::Average, 2)
    };
    assert!(matches!(
        run(&config, &inputs(4, 3)).unwrap_err(),
        GarError::PreTooFewInputs { needed: 5, .. }
    ));
    // Buckets of 2 turn 9 inputs into 5: too few for Krum with f = 1 (needs 5)? Exactly enough.
    let config = GarConfig {
        pre: vec![PreAggregator::Bucketing { size: 2 }],
        ..GarConfig::new(Rule::Krum, 1)
    };
    assert!(run(&config, &inputs(9, 3)).is_ok());
    assert!(matches!(
        run(&config, &inputs(8, 3)).unwrap_err(),
        GarError::TooFewInputs {
            n: 4,
            needed: 5,
            ..
        }
    ));
}

#[test]
fn bad_parameters_are_errors() {
    let rows = inputs(9, 3);
    let mut config = GarConfig::new(Rule::MultiKrum, 2);
    config.m = Some(8);
    assert!(matches!(
        run(&config, &rows),
        Err(GarError::InvalidParameter { name: "m", .. })
    ));
    config.m = Some(0);
    assert!(matches!(
        run(&config, &rows),
        Err(GarError::InvalidParameter { name: "m", .. })
    ));
    config.m = Some(7);
    assert_eq!(run(&config, &rows).unwrap().selected.len(), 7);
    for broken in [
        GarConfig {
            cc_tau: 0.0,
            ..GarConfig::new(Rule::CenteredClipping, 1)
        },
        GarConfig {
            cc_tau: f32::NAN,
            ..GarConfig::new(Rule::CenteredClipping, 1)
        },
        GarConfig {
            cc_iterations: 0,
            ..GarConfig::new(Rule::CenteredClipping, 1)
        },
        GarConfig {
            gm_nu: -1.0,
            ..GarConfig::new(Rule::GeometricMedian, 1)
        },
        GarConfig {
            gm_iterations: 0,
            ..GarConfig::new(Rule::GeometricMedian, 1)
        },
        GarConfig {
            pre: vec![PreAggregator::Bucketing { size: 0 }],
            ..GarConfig::new(Rule::Average, 0)
        },
        GarConfig {
            pre: vec![PreAggregator::NormClip {
                max_norm: f32::INFINITY,
            }],
            ..GarConfig::new(Rule::Average, 0)
        },
    ] {
        assert!(
            matches!(run(&broken, &rows), Err(GarError::InvalidParameter { .. })),
            "{broken:?}"
        );
    }
}

#[test]
fn mda_rejects_more_inputs_than_its_bitsets_hold() {
    let error = run(&GarConfig::new(Rule::Mda, 1), &inputs(129, 2)).unwrap_err();
    assert!(
        matches!(error, GarError::TooManyInputs { max: 128, .. }),
        "{error}"
    );
}

#[test]
fn too_many_non_finite_inputs_are_an_error_for_selecting_rules() {
    let mut rows = inputs(7, 3);
    for row in &mut rows[..3] {
        row[0] = f32::NAN;
    }
    for rule in [Rule::Mda, Rule::Krum, Rule::MultiKrum] {
        let error = run(&GarConfig::new(rule, 1), &rows).unwrap_err();
        assert!(
            matches!(error, GarError::NoFiniteChoice { .. }),
            "{rule}: {error}"
        );
    }
}

#[test]
fn names_round_trip_and_unknown_names_list_the_valid_ones() {
    for rule in Rule::ALL {
        assert_eq!(rule.name().parse::<Rule>().unwrap(), rule);
        assert_eq!(rule.to_string(), rule.name());
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(json, format!("\"{}\"", rule.name()));
    }
    let error = "kurm".parse::<Rule>().unwrap_err().to_string();
    assert!(
        error.contains("kurm") && error.contains("multi-krum") && error.contains("mda"),
        "{error}"
    );
    for spec in ["nnm", "bucketing:3", "clip:2.5"] {
        assert_eq!(spec.parse::<PreAggregator>().unwrap().to_string(), spec);
    }
    for spec in [
        "nnm:1",
        "bucketing",
        "bucketing:0",
        "clip:-1",
        "clip:x",
        "median",
    ] {
        assert!(spec.parse::<PreAggregator>().is_err(), "{spec}");
    }
}

/// Zero-length vectors are valid input (nothing to aggregate) and must not trip any kernel.
#[test]
fn zero_length_vectors_aggregate_to_an_empty_vector() {
    for rule in Rule::ALL {
        let rows = inputs(rule.min_inputs(1), 0);
        let result =
            run(&GarConfig::new(rule, 1), &rows).unwrap_or_else(|error| panic!("{rule}: {error}"));
        assert!(result.value.is_empty(), "{rule}");
    }
}

/// Rows that are strided views (e.g. columns of a matrix) are accepted and give the same result
/// as contiguous copies.
#[test]
fn strided_rows_give_the_same_result_as_contiguous_ones() {
    let matrix = ndarray::Array2::from_shape_fn((6, 9), |(c, k)| ((c * 5 + k * 3) % 7) as f32);
    let strided: Vec<ArrayView1<'_, f32>> = matrix.columns().into_iter().collect();
    let copies: Vec<Array1<f32>> = strided.iter().map(ArrayView1::to_owned).collect();
    for rule in Rule::ALL {
        let config = GarConfig::new(rule, 1);
        let expected = run(&config, &copies).unwrap();
        assert_eq!(
            gar::aggregate(&config, &strided).unwrap(),
            expected,
            "{rule}"
        );
    }
}
