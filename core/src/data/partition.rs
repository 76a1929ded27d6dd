//! How a training set is divided among workers: iid (the paper's setting) or label-skewed by a
//! Dirichlet distribution (Hsu, Qi, Brown, "Measuring the Effects of Non-Identical Data
//! Distribution for Federated Visual Classification", 2019, §3).

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

use super::DataError;

/// The smallest concentration used; smaller or invalid values are treated as this (every class
/// then goes almost entirely to one worker, the α → 0 limit).
const MIN_ALPHA: f64 = 1e-3;

/// A rule that assigns every training sample to exactly one worker.
///
/// Serialized with a `kind` tag: `{kind: iid}`, `{kind: dirichlet, alpha: 0.5}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[cfg_attr(
    feature = "schema",
    schemars(transform = crate::schema::structural_tagged_union)
)]
pub enum Partition {
    /// Shuffle, then deal equal shares (sizes differ by at most one sample).
    #[default]
    Iid,
    /// For each class, split its samples across workers in proportions drawn from
    /// Dirichlet(α, …, α). Small α (0.1) gives each worker few classes; large α (100) is
    /// close to iid.
    Dirichlet {
        /// The concentration α > 0.
        alpha: f64,
    },
}

impl Partition {
    /// Checks parameters a user wrote, naming the fix. [`Partition::assign`] itself never fails.
    pub fn validate(&self) -> Result<(), DataError> {
        match *self {
            Self::Iid => Ok(()),
            Self::Dirichlet { alpha } if alpha.is_finite() && alpha > 0.0 => Ok(()),
            Self::Dirichlet { alpha } => Err(DataError::BadAlpha { alpha }),
        }
    }

    /// Sample indices per worker: `workers` disjoint lists (each sorted) covering
    /// `0..labels.len()`, deterministic for a seed.
    ///
    /// Dirichlet: when there are at least as many samples as workers, every worker gets at least
    /// one sample (an empty worker could not compute a gradient): a worker left empty by the
    /// draw takes one sample from the largest shard. An α that [`Partition::validate`] rejects
    /// is treated as the nearest usable value (non-positive or NaN as a tiny α, infinite as
    /// equal proportions). `workers == 0` gives no shards.
    pub fn assign(&self, labels: &[u8], workers: usize, seed: u64) -> Vec<Vec<usize>> {
        if workers == 0 {
            return Vec::new();
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut shards = match *self {
            Self::Iid => iid(labels.len(), workers, &mut rng),
            Self::Dirichlet { alpha } => dirichlet(labels, workers, alpha, &mut rng),
        };
        for shard in &mut shards {
            shard.sort_unstable();
        }
        shards
    }
}

fn iid(n: usize, workers: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    (0..workers)
        .map(|w| order[w * n / workers..(w + 1) * n / workers].to_vec())
        .collect()
}

fn dirichlet(labels: &[u8], workers: usize, alpha: f64, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let classes = labels.iter().max().map_or(0, |&m| usize::from(m) + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &label) in labels.iter().enumerate() {
        by_class[usize::from(label)].push(i);
    }
    let gamma = if alpha.is_finite() {
        Gamma::new(alpha.max(MIN_ALPHA), 1.0).ok()
    } else if alpha.is_nan() {
        Gamma::new(MIN_ALPHA, 1.0).ok()
    } else {
        None // α = +∞: the Dirichlet collapses to equal proportions.
    };
    let mut shards: Vec<Vec<usize>> = vec![Vec::new(); workers];
    let mut weights = vec![0.0_f64; workers];
    for mut members in by_class {
        members.shuffle(rng);
        // A Dirichlet draw is a vector of independent Gamma(α, 1) draws, normalized.
        match &gamma {
            Some(g) => weights.iter_mut().for_each(|w| *w = g.sample(rng)),
            None => weights.fill(1.0),
        }
        let total: f64 = weights.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            // Every draw underflowed to 0 (α tiny): the limit puts the class on one worker.
            weights.fill(0.0);
            let lucky = rand::Rng::random_range(rng, 0..workers);
            weights[lucky] = 1.0;
        }
        let total: f64 = weights.iter().sum();
        let n = members.len();
        let mut start = 0;
        let mut cumulative = 0.0;
        for (shard, &w) in shards.iter_mut().zip(&weights) {
            cumulative += w / total;
            let end = ((cumulative * n as f64).round() as usize).clamp(start, n);
            shard.extend_from_slice(&members[start..end]);
            start = end;
        }
        // Rounding can leave the last few samples when the cumulative sum ends just below 1.
        if let Some(last) = shards.last_mut() {
            last.extend_from_slice(&members[start..]);
        }
    }
    if labels.len() >= workers {
        while let Some(empty) = shards.iter().position(Vec::is_empty) {
            let largest = (0..workers)
                .max_by_key(|&w| shards[w].len())
                .unwrap_or(empty);
            if let Some(moved) = shards[largest].pop() {
                shards[empty].push(moved);
            } else {
                break;
            }
        }
    }
    shards
}
