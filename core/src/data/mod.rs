//! Training data: the IDX loader for MNIST-format files (Fashion-MNIST by default), seeded
//! synthetic data for tests, the split of a training set across workers (iid or Dirichlet), and
//! a mini-batch sampler that reuses its buffers.
//!
//! The default data set is Fashion-MNIST (Xiao et al., 2017) as installed by the Debian package
//! `dataset-fashion-mnist` in [`DEFAULT_DATA_DIR`]; the original MNIST files have the same
//! format and names and load unchanged.

mod batches;
mod idx;
mod partition;

use std::path::{Path, PathBuf};

pub use batches::Batches;
pub use idx::{
    gunzip_if_gzip, load_idx_image_rows, load_idx_images, load_idx_labels, parse_idx_image_rows,
    parse_idx_labels,
};
use ndarray::{Array2, Axis};
pub use partition::Partition;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Where the Debian package `dataset-fashion-mnist` installs Fashion-MNIST.
pub const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The command that installs the default data set, quoted in errors.
pub const INSTALL_HINT: &str = "apt-get install dataset-fashion-mnist";

/// A labelled image data set held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// One sample per row, `rows·cols` pixels each, scaled to `[0, 1]`.
    pub images: Array2<f32>,
    /// The class of each sample, `< classes`.
    pub labels: Vec<u8>,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// Number of classes (labels are `0..classes`).
    pub classes: usize,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `(rows, cols)`, the argument [`crate::model::ModelSpec::build`] takes.
    pub fn input_shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// How many samples each class has (`classes` entries).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &label in &self.labels {
            if let Some(c) = counts.get_mut(usize::from(label)) {
                *c += 1;
            }
        }
        counts
    }

    /// The samples at `indices`, in that order (e.g. one worker's shard, or a test subset).
    /// Indices out of range are an error naming the first such index.
    pub fn subset(&self, indices: &[usize]) -> Result<Self, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::IndexOutOfRange {
                index: bad,
                len: self.len(),
            });
        }
        Ok(Self {
            images: self.images.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
            classes: self.classes,
        })
    }
}

/// A training set and a test set of the same image shape and classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Samples the workers train on.
    pub train: Dataset,
    /// Held-out samples for accuracy.
    pub test: Dataset,
}

/// Why data could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file of the data set is missing from the directory.
    #[error(
        "no {name} file in {}: tried {tried}; install Fashion-MNIST with `{INSTALL_HINT}` \
         or point the data directory at MNIST-format IDX files",
        dir.display()
    )]
    MissingFile {
        /// The directory searched.
        dir: PathBuf,
        /// What was looked for, e.g. "training images".
        name: &'static str,
        /// The file names tried, comma separated.
        tried: String,
    },
    /// A file starts with gzip's magic bytes but does not decompress.
    #[error("{} looks gzipped but does not decompress ({source}); re-download or gunzip it", path.display())]
    BadGzip {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        source: std::io::Error,
    },
    /// The first four bytes are not the IDX magic expected for this kind of file.
    #[error(
        "{} has magic number {found:#010x}, expected {expected:#010x} (IDX unsigned-byte \
         {} file); is it the right file, and not an images/labels mix-up?",
        path.display(),
        if *expected == 0x0803 { "image" } else { "label" }
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Magic found.
        found: u32,
        /// Magic expected.
        expected: u32,
    },
    /// The file ends before the data its header declares.
    #[error(
        "{} is truncated: its header needs {expected} bytes but the (decompressed) file has \
         {found}; re-download it",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header requires.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The header's dimensions are unusable or disagree with the contents.
    #[error("{} has wrong dimensions: {detail}", path.display())]
    BadDimensions {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An image file and its label file disagree on the number of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels; use files of the same set",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Images in it.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Labels in it.
        labels: usize,
    },
    /// Training and test images differ in size.
    #[error(
        "training images are {train_rows}x{train_cols} but test images are \
         {test_rows}x{test_cols} in {}; use files of one data set",
        dir.display()
    )]
    ShapeMismatch {
        /// The directory.
        dir: PathBuf,
        /// Training image height.
        train_rows: usize,
        /// Training image width.
        train_cols: usize,
        /// Test image height.
        test_rows: usize,
        /// Test image width.
        test_cols: usize,
    },
    /// A sample index is past the end of the data set.
    #[error("sample index {index} is out of range for a data set of {len} samples")]
    IndexOutOfRange {
        /// The bad index.
        index: usize,
        /// The data set's size.
        len: usize,
    },
    /// A mini-batch sampler was given nothing to sample.
    #[error(
        "the shard is empty: this worker got no samples; use fewer workers or a larger Dirichlet alpha"
    )]
    EmptyShard,
    /// A mini-batch size of zero.
    #[error("batch size 0; use a batch size of at least 1 (the paper uses 32)")]
    ZeroBatch,
    /// A Dirichlet concentration that is not a positive finite number.
    #[error(
        "dirichlet alpha {alpha} is not a positive finite number; use e.g. 0.5 (skewed) or 100 (near iid)"
    )]
    BadAlpha {
        /// The value given.
        alpha: f64,
    },
}

/// File names tried for each part, compressed first (as Debian ships them). MNIST mirrors also
/// use a dot before `idx`.
const PARTS: [(&str, &str); 4] = [
    ("training images", "train-images"),
    ("training labels", "train-labels"),
    ("test images", "t10k-images"),
    ("test labels", "t10k-labels"),
];

fn find_part(dir: &Path, name: &'static str, stem: &str, dims: u8) -> Result<PathBuf, DataError> {
    let candidates: Vec<String> = ["-", "."]
        .iter()
        .flat_map(|sep| {
            let base = format!("{stem}{sep}idx{dims}-ubyte");
            [format!("{base}.gz"), base]
        })
        .collect();
    candidates
        .iter()
        .map(|c| dir.join(c))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::MissingFile {
            dir: dir.to_path_buf(),
            name,
            tried: candidates.join(", "),
        })
}

fn load_set(
    dir: &Path,
    images: (&'static str, &str),
    labels: (&'static str, &str),
    samples: Samples<'_>,
) -> Result<Dataset, DataError> {
    let images_path = find_part(dir, images.0, images.1, 3)?;
    let labels_path = find_part(dir, labels.0, labels.1, 1)?;
    let label_values = load_idx_labels(&labels_path)?;
    let (pixels, rows, cols, count) = load_idx_image_rows(&images_path, samples.indices())?;
    if count != label_values.len() {
        return Err(DataError::CountMismatch {
            images: count,
            images_path,
            labels: label_values.len(),
            labels_path,
        });
    }
    let classes = label_values.iter().max().map_or(0, |&m| usize::from(m) + 1);
    let labels = match samples.indices() {
        None => label_values,
        Some(indices) => indices.iter().map(|&i| label_values[i]).collect(),
    };
    Ok(Dataset {
        images: pixels,
        labels,
        rows,
        cols,
        classes,
    })
}

/// Loads the training and test sets from a directory of MNIST-format IDX files named as the
/// originals (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`), each raw or with `.gz`.
///
/// `classes` is one more than the largest label in either set, so both sets agree.
pub fn load_dir(dir: &Path) -> Result<Split, DataError> {
    load_dir_samples(dir, Samples::All, Samples::All)
}

/// Which samples of a set [`load_dir_samples`] keeps.
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    /// Every sample, in file order.
    All,
    /// The samples at these indices, in this order (an empty slice keeps only the shape).
    Only(&'a [usize]),
}

impl Samples<'_> {
    fn indices(&self) -> Option<&[usize]> {
        match self {
            Self::All => None,
            Self::Only(indices) => Some(indices),
        }
    }
}

/// [`load_dir`] keeping only some samples of each set. `classes` still comes from every label
/// of both files, so every node of a job builds the same model whatever it keeps.
pub fn load_dir_samples(
    dir: &Path,
    train: Samples<'_>,
    test: Samples<'_>,
) -> Result<Split, DataError> {
    let mut train = load_set(dir, PARTS[0], PARTS[1], train)?;
    let mut test = load_set(dir, PARTS[2], PARTS[3], test)?;
    if train.input_shape() != test.input_shape() {
        return Err(DataError::ShapeMismatch {
            dir: dir.to_path_buf(),
            train_rows: train.rows,
            train_cols: train.cols,
            test_rows: test.rows,
            test_cols: test.cols,
        });
    }
    let classes = train.classes.max(test.classes);
    train.classes = classes;
    test.classes = classes;
    Ok(Split { train, test })
}

/// The labels of the training set in file order (what partitions are computed from).
pub fn load_train_labels(dir: &Path) -> Result<Vec<u8>, DataError> {
    load_idx_labels(&find_part(dir, PARTS[1].0, PARTS[1].1, 1)?)
}

/// Seeded synthetic classification data of any image shape, for tests and benchmarks without
/// the real data set.
///
/// Each class has a random prototype image; a sample is the average of its class's prototype
/// and uniform noise, so classes overlap but are learnable. Labels are drawn uniformly.
/// `classes` is clamped to `1..=256` because labels are bytes.
pub fn synthetic(samples: usize, rows: usize, cols: usize, classes: usize, seed: u64) -> Dataset {
    let classes = classes.clamp(1, 256);
    let features = rows * cols;
    let mut rng = StdRng::seed_from_u64(seed);
    let prototypes: Vec<f32> = (0..classes * features).map(|_| rng.random()).collect();
    let labels: Vec<u8> = (0..samples)
        .map(|_| rng.random_range(0..classes) as u8)
        .collect();
    let mut images = Array2::zeros((samples, features));
    for (mut row, &label) in images.rows_mut().into_iter().zip(&labels) {
        let proto = &prototypes[usize::from(label) * features..][..features];
        for (pixel, &p) in row.iter_mut().zip(proto) {
            *pixel = 0.5 * p + 0.5 * rng.random::<f32>();
        }
    }
    Dataset {
        images,
        labels,
        rows,
        cols,
        classes,
    }
}
