//! Pre-aggregators: transformations of the inputs run before the rule, in the order given in
//! [`GarConfig::pre`] (ByzFL's composable `pre_aggregators`, ANCHORS.md §3.1).
//!
//! - NNM, nearest-neighbour mixing (Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan,
//!   "Fixing by Mixing", AISTATS 2023, Algorithm 1): input i becomes the mean of its `n − f`
//!   nearest inputs, itself included (ties to the lower index). Output i stands for input i.
//! - Bucketing (Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via
//!   Bucketing", ICLR 2022, Algorithm 1): a random permutation, seeded by [`GarConfig::seed`] so
//!   runs are reproducible, cut into buckets of `size` consecutive inputs (the last one may be
//!   smaller), each replaced by its mean. Each Byzantine input spoils at most one bucket, so the
//!   rule still assumes `f`.
//! - Norm clipping: x ← x · min(1, C / ‖x‖); inputs with a non-finite norm pass unchanged.
//!
//! Each stage also reports, for each vector it outputs, the original inputs it stands for, so
//! [`super::Aggregation::selected`] can name original inputs.

use ndarray::Array1;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::{
    GarConfig, PreAggregator, average,
    distances::{self, sq_distances_to},
    rows::Rows,
};

/// Runs every pre-aggregator of `config` on validated rows (bounds already checked). Returns the
/// final vectors and, for each, the sorted original inputs it stands for.
pub(crate) fn apply_all(
    config: &GarConfig,
    rows: &Rows<'_>,
) -> (Vec<Array1<f32>>, Vec<Vec<usize>>) {
    let mut vectors: Vec<Array1<f32>> = Vec::new();
    let mut groups: Vec<Vec<usize>> = (0..rows.len()).map(|index| vec![index]).collect();
    for (stage, &pre) in config.pre.iter().enumerate() {
        let (next, parts) = if stage == 0 {
            apply(pre, config, rows)
        } else {
            apply(pre, config, &Rows::from_owned(&vectors))
        };
        groups = parts
            .iter()
            .map(|part| {
                let mut group: Vec<usize> = part
                    .iter()
                    .flat_map(|&index| groups[index].iter().copied())
                    .collect();
                group.sort_unstable();
                group
            })
            .collect();
        vectors = next;
    }
    (vectors, groups)
}

/// One stage: its output vectors and, for each, the indices of its inputs it stands for.
fn apply(
    pre: PreAggregator,
    config: &GarConfig,
    rows: &Rows<'_>,
) -> (Vec<Array1<f32>>, Vec<Vec<usize>>) {
    let n = rows.len();
    match pre {
        PreAggregator::Nnm => {
            let distances = distances::sq_distances(rows);
            let keep = n - config.f;
            let vectors = (0..n)
                .map(|i| {
                    let mut order: Vec<usize> = (0..n).collect();
                    order.sort_by(|&a, &b| distances[[i, a]].total_cmp(&distances[[i, b]]));
                    order.truncate(keep);
                    average::mean_of(rows, &order)
                })
                .collect();
            (vectors, (0..n).map(|i| vec![i]).collect())
        }
        PreAggregator::Bucketing { size } => {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut StdRng::seed_from_u64(config.seed));
            let buckets: Vec<Vec<usize>> =
                order.chunks(size.max(1)).map(<[usize]>::to_vec).collect();
            let vectors = buckets
                .iter()
                .map(|bucket| average::mean_of(rows, bucket))
                .collect();
            (vectors, buckets)
        }
        PreAggregator::NormClip { max_norm } => {
            let vectors = rows
                .iter()
                .zip(sq_distances_to(rows, None))
                .map(|(row, squared)| {
                    let norm = squared.sqrt();
                    let limit = f64::from(max_norm);
                    if norm.is_finite() && norm > limit {
                        let scale = (limit / norm) as f32;
                        row.iter().map(|&x| x * scale).collect()
                    } else {
                        Array1::from_vec(row.to_vec())
                    }
                })
                .collect();
            (vectors, (0..n).map(|i| vec![i]).collect())
        }
    }
}
