//! Partitions of a training set across workers: disjoint, covering, seeded, and (Dirichlet)
//! label-skewed in the way Hsu et al. (2019) describe.

// Test code: a failed unwrap is a failed test, and exact float equality is asserted on
// purpose where results must be bit-for-bit identical.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use byzsgd_core::data::{DataError, Partition};

/// 1,000 samples, 10 balanced classes, interleaved as in a shuffled data set.
fn labels() -> Vec<u8> {
    (0..1_000).map(|i| ((i * 7) % 10) as u8).collect()
}

fn assert_disjoint_cover(shards: &[Vec<usize>], n: usize) {
    let mut seen = vec![false; n];
    for shard in shards {
        for &i in shard {
            assert!(!seen[i], "sample {i} given to two workers");
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "some samples given to nobody");
}

/// Largest share of one class in a worker's shard, averaged over workers.
fn mean_top_class_share(shards: &[Vec<usize>], labels: &[u8]) -> f64 {
    let shares: Vec<f64> = shards
        .iter()
        .map(|shard| {
            let mut counts = [0_usize; 10];
            for &i in shard {
                counts[usize::from(labels[i])] += 1;
            }
            *counts.iter().max().unwrap() as f64 / shard.len() as f64
        })
        .collect();
    shares.iter().sum::<f64>() / shares.len() as f64
}

#[test]
fn iid_is_a_balanced_disjoint_cover() {
    let labels = labels();
    for workers in [1, 3, 7, 1_000] {
        let shards = Partition::Iid.assign(&labels, workers, 5);
        assert_eq!(shards.len(), workers);
        assert_disjoint_cover(&shards, labels.len());
        let sizes: Vec<usize> = shards.iter().map(Vec::len).collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(max - min <= 1, "{workers} workers: sizes {sizes:?}");
    }
    // iid keeps every worker's label mix near the global 10 %.
    let shards = Partition::Iid.assign(&labels, 5, 5);
    assert!(mean_top_class_share(&shards, &labels) < 0.16);
}

#[test]
fn dirichlet_is_a_disjoint_cover_with_no_empty_worker() {
    let labels = labels();
    for alpha in [0.01, 0.1, 1.0, 100.0] {
        for workers in [2, 7, 30] {
            let shards = Partition::Dirichlet { alpha }.assign(&labels, workers, 3);
            assert_eq!(shards.len(), workers);
            assert_disjoint_cover(&shards, labels.len());
            assert!(
                shards.iter().all(|s| !s.is_empty()),
                "alpha {alpha}, {workers} workers: an empty worker"
            );
        }
    }
}

#[test]
fn partitions_are_deterministic_per_seed() {
    let labels = labels();
    for partition in [Partition::Iid, Partition::Dirichlet { alpha: 0.5 }] {
        let a = partition.assign(&labels, 6, 42);
        assert_eq!(a, partition.assign(&labels, 6, 42), "{partition:?}");
        assert_ne!(a, partition.assign(&labels, 6, 43), "{partition:?}");
    }
}

/// Small α concentrates each worker on few classes; large α approaches iid.
#[test]
fn dirichlet_alpha_controls_label_skew() {
    let labels = labels();
    let skew = |alpha: f64| {
        let shards = Partition::Dirichlet { alpha }.assign(&labels, 10, 9);
        mean_top_class_share(&shards, &labels)
    };
    let (skewed, mild, near_iid) = (skew(0.1), skew(1.0), skew(1_000.0));
    assert!(skewed > 0.5, "alpha 0.1: top class share {skewed}");
    assert!(near_iid < 0.2, "alpha 1000: top class share {near_iid}");
    assert!(
        skewed > mild && mild > near_iid,
        "{skewed} > {mild} > {near_iid}"
    );
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let labels = labels();
    assert!(Partition::Iid.assign(&labels, 0, 1).is_empty());
    assert!(
        Partition::Dirichlet { alpha: 1.0 }
            .assign(&labels, 0, 1)
            .is_empty()
    );
    let more_workers_than_samples = Partition::Iid.assign(&labels[..3], 5, 1);
    assert_disjoint_cover(&more_workers_than_samples, 3);
    assert_eq!(
        Partition::Dirichlet { alpha: 1.0 }.assign(&[], 4, 1),
        vec![Vec::<usize>::new(); 4]
    );
    // Invalid α values are rejected by validate() but assign still returns a valid cover.
    for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let partition = Partition::Dirichlet { alpha };
        assert!(
            matches!(partition.validate(), Err(DataError::BadAlpha { .. })),
            "{alpha}"
        );
        assert_disjoint_cover(&partition.assign(&labels, 4, 1), labels.len());
    }
    let message = Partition::Dirichlet { alpha: 0.0 }
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("alpha 0") && message.contains("0.5"),
        "{message}"
    );
    assert!(Partition::Dirichlet { alpha: 0.3 }.validate().is_ok());
}

#[test]
fn partition_reads_the_manifest_syntax() {
    let parse = |s: &str| serde_json::from_str::<Partition>(s);
    assert_eq!(parse(r#"{"kind":"iid"}"#).unwrap(), Partition::Iid);
    assert_eq!(
        parse(r#"{"kind":"dirichlet","alpha":0.5}"#).unwrap(),
        Partition::Dirichlet { alpha: 0.5 }
    );
    assert!(
        parse(r#"{"kind":"dirichlet"}"#).is_err(),
        "alpha has no default"
    );
    assert!(parse(r#"{"kind":"shards"}"#).is_err());
}
