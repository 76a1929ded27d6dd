//! A seeded mini-batch sampler over one worker's shard that copies each batch into buffers it
//! owns, so a training loop allocates nothing per step.

use std::sync::Arc;

use ndarray::{Array2, ArrayView2};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::{DataError, Dataset};

/// Endless mini-batches from a shard of a data set, epoch after epoch, reshuffled every epoch.
///
/// Every batch has exactly `batch_size` samples: when an epoch runs out mid-batch, the batch is
/// completed from the next epoch's (freshly shuffled) order, so each sample is still seen once
/// per epoch and the model's workspaces never change size. A shard smaller than the batch thus
/// repeats samples within a batch. The order depends only on the shard and the seed.
#[derive(Debug, Clone)]
pub struct Batches {
    data: Arc<Dataset>,
    shard: Vec<usize>,
    cursor: usize,
    epochs: usize,
    rng: StdRng,
    x: Array2<f32>,
    labels: Vec<u8>,
}

impl Batches {
    /// A sampler over `shard` (indices into `data`) with batches of `batch_size`.
    pub fn new(
        data: Arc<Dataset>,
        shard: Vec<usize>,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        if batch_size == 0 {
            return Err(DataError::ZeroBatch);
        }
        if shard.is_empty() {
            return Err(DataError::EmptyShard);
        }
        if let Some(&bad) = shard.iter().find(|&&i| i >= data.len()) {
            return Err(DataError::IndexOutOfRange {
                index: bad,
                len: data.len(),
            });
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut shard = shard;
        shard.shuffle(&mut rng);
        let features = data.images.ncols();
        Ok(Self {
            data,
            shard,
            cursor: 0,
            epochs: 0,
            rng,
            x: Array2::zeros((batch_size, features)),
            labels: vec![0; batch_size],
        })
    }

    /// The next batch: `batch_size × features` pixels and their labels, valid until the next
    /// call.
    pub fn next_batch(&mut self) -> (ArrayView2<'_, f32>, &[u8]) {
        for (mut row, label) in self.x.rows_mut().into_iter().zip(self.labels.iter_mut()) {
            if self.cursor == self.shard.len() {
                self.shard.shuffle(&mut self.rng);
                self.cursor = 0;
                self.epochs += 1;
            }
            let index = self.shard[self.cursor];
            self.cursor += 1;
            row.assign(&self.data.images.row(index));
            *label = self.data.labels[index];
        }
        (self.x.view(), &self.labels)
    }

    /// Complete passes over the shard so far.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Samples per batch.
    pub fn batch_size(&self) -> usize {
        self.labels.len()
    }

    /// Number of samples in the shard.
    pub fn shard_len(&self) -> usize {
        self.shard.len()
    }
}

/// Owned copies of each batch, for callers that keep batches; [`Batches::next_batch`] avoids
/// the copy. Never ends.
impl Iterator for Batches {
    type Item = (Array2<f32>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        let (x, labels) = self.next_batch();
        Some((x.to_owned(), labels.to_vec()))
    }
}
