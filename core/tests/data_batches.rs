//! The mini-batch sampler: full batches from the shard only, each sample once per epoch,
//! reshuffled, seeded, and clear errors for unusable arguments.

// Test code: a failed unwrap is a failed test, and exact float equality is asserted on
// purpose where results must be bit-for-bit identical.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use std::sync::Arc;

use byzsgd_core::data::{Batches, DataError, Dataset};
use ndarray::Array2;

/// 100 one-pixel "images" whose pixel is the sample index, so batches can be decoded.
fn indexed() -> Arc<Dataset> {
    Arc::new(Dataset {
        images: Array2::from_shape_fn((100, 1), |(i, _)| i as f32),
        labels: (0..100).map(|i| (i % 10) as u8).collect(),
        rows: 1,
        cols: 1,
        classes: 10,
    })
}

fn decode(batches: &mut Batches) -> Vec<usize> {
    let (x, labels) = batches.next_batch();
    let ids: Vec<usize> = x.column(0).iter().map(|&v| v as usize).collect();
    for (&id, &label) in ids.iter().zip(labels) {
        assert_eq!(usize::from(label), id % 10, "label travels with its image");
    }
    ids
}

#[test]
fn each_epoch_visits_every_shard_sample_once_in_a_fresh_order() {
    let shard: Vec<usize> = (0..100).filter(|i| i % 3 == 0).take(30).collect();
    let mut batches = Batches::new(indexed(), shard.clone(), 10, 7).unwrap();
    let mut epochs = Vec::new();
    for _ in 0..3 {
        let mut order: Vec<usize> = (0..3).flat_map(|_| decode(&mut batches)).collect();
        let visited = order.clone();
        order.sort_unstable();
        assert_eq!(order, shard);
        epochs.push(visited);
    }
    assert_ne!(epochs[0], epochs[1], "reshuffled every epoch");
    assert_ne!(epochs[0], shard, "shuffled at all");
    decode(&mut batches);
    assert_eq!(batches.epochs(), 3);
}

#[test]
fn batches_are_always_full_even_across_epoch_boundaries() {
    let shard: Vec<usize> = (10..17).collect();
    let mut batches = Batches::new(indexed(), shard, 5, 1).unwrap();
    let mut counts = [0_usize; 100];
    for _ in 0..7 {
        let ids = decode(&mut batches);
        assert_eq!(ids.len(), 5);
        for id in ids {
            counts[id] += 1;
        }
    }
    // 35 draws over 7 samples: exactly 5 epochs, each sample 5 times, nothing outside.
    assert!(
        counts[10..17].iter().all(|&c| c == 5),
        "{:?}",
        &counts[10..17]
    );
    assert_eq!(counts.iter().sum::<usize>(), 35);
    assert_eq!(
        batches.epochs(),
        4,
        "the 5th epoch ended exactly at the last draw"
    );
}

#[test]
fn a_shard_smaller_than_the_batch_still_gives_full_batches() {
    let mut batches = Batches::new(indexed(), vec![4, 5], 5, 1).unwrap();
    let ids = decode(&mut batches);
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|&i| i == 4 || i == 5));
}

#[test]
fn order_is_deterministic_per_seed() {
    let shard: Vec<usize> = (0..100).collect();
    let draw = |seed| {
        let mut b = Batches::new(indexed(), shard.clone(), 16, seed).unwrap();
        (0..10).flat_map(|_| decode(&mut b)).collect::<Vec<_>>()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
}

#[test]
fn iterator_yields_owned_copies_of_the_same_sequence() {
    let shard: Vec<usize> = (0..50).collect();
    let mut by_view = Batches::new(indexed(), shard.clone(), 8, 2).unwrap();
    let owned: Vec<(Array2<f32>, Vec<u8>)> = Batches::new(indexed(), shard, 8, 2)
        .unwrap()
        .take(9)
        .collect();
    for (x, labels) in owned {
        let (vx, vl) = by_view.next_batch();
        assert_eq!(x, vx);
        assert_eq!(labels, vl);
    }
}

#[test]
fn unusable_arguments_are_errors_not_panics() {
    assert!(matches!(
        Batches::new(indexed(), vec![], 4, 0),
        Err(DataError::EmptyShard)
    ));
    assert!(matches!(
        Batches::new(indexed(), vec![1], 0, 0),
        Err(DataError::ZeroBatch)
    ));
    let error = Batches::new(indexed(), vec![1, 100], 4, 0).unwrap_err();
    assert!(matches!(
        error,
        DataError::IndexOutOfRange {
            index: 100,
            len: 100
        }
    ));
    assert!(error.to_string().contains("100 samples"));
}
