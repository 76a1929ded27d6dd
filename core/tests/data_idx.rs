//! The IDX loader on files written by the test: good files (raw and gzipped) load exactly, and
//! every kind of broken file gives an error naming the file and the problem, never a panic.

// Test code: a failed unwrap is a failed test, and exact float equality is asserted on
// purpose where results must be bit-for-bit identical.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use byzsgd_core::data::{self, DataError, Samples, load_idx_images, load_idx_labels};
use flate2::{Compression, write::GzEncoder};

/// A fresh directory under the system temp dir, unique per test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("byzsgd-data-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx_bytes(dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(body);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// 3 images of 2×3 pixels with distinct values, and their labels.
fn tiny_images() -> Vec<u8> {
    idx_bytes(&[3, 2, 3], &(0..18).map(|v| v * 15).collect::<Vec<u8>>())
}

fn tiny_labels() -> Vec<u8> {
    idx_bytes(&[3], &[2, 0, 1])
}

/// A data directory under the standard names, mixing gzipped and raw files and both name
/// separators: the tiny training set and one test image of label 4.
fn tiny_data_dir(test: &str) -> PathBuf {
    let dir = temp_dir(test);
    write(&dir, "train-images-idx3-ubyte.gz", &gzip(&tiny_images()));
    write(&dir, "train-labels-idx1-ubyte", &tiny_labels());
    write(
        &dir,
        "t10k-images.idx3-ubyte",
        &idx_bytes(&[1, 2, 3], &[9; 6]),
    );
    write(&dir, "t10k-labels.idx1-ubyte", &idx_bytes(&[1], &[4]));
    dir
}

#[test]
fn raw_and_gzipped_files_load_identically_with_pixels_scaled_to_unit_range() {
    let dir = temp_dir("roundtrip");
    let raw = write(&dir, "raw-images", &tiny_images());
    // Gzip is detected by content, not by the file name.
    let gz = write(&dir, "gz-images-without-extension", &gzip(&tiny_images()));
    let (a, rows, cols) = load_idx_images(&raw).unwrap();
    let (b, ..) = load_idx_images(&gz).unwrap();
    assert_eq!((rows, cols), (2, 3));
    assert_eq!(a.dim(), (3, 6));
    assert_eq!(a, b);
    assert_eq!(a[[0, 0]], 0.0);
    assert_eq!(a[[2, 5]], 1.0, "255 maps to 1");
    assert!((a[[0, 1]] - 15.0 / 255.0).abs() < 1e-7);
    let labels = write(&dir, "labels.gz", &gzip(&tiny_labels()));
    assert_eq!(load_idx_labels(&labels).unwrap(), vec![2, 0, 1]);
}

#[test]
fn load_dir_finds_the_standard_names_raw_or_gzipped() {
    let dir = tiny_data_dir("load-dir");
    let split = data::load_dir(&dir).unwrap();
    assert_eq!(split.train.len(), 3);
    assert_eq!(split.test.len(), 1);
    assert_eq!(split.train.input_shape(), (2, 3));
    assert_eq!(
        split.train.classes, 5,
        "classes span both sets (max label 4)"
    );
    assert_eq!(split.test.classes, 5);
    assert_eq!(split.train.labels, vec![2, 0, 1]);
}

/// What a node process loads for itself (a worker its shard, a server no training images) is
/// exactly the same samples as loading everything and taking the subset, with the classes of
/// the whole files, so every node builds the same model.
#[test]
fn loading_only_some_samples_equals_loading_all_then_taking_the_subset() {
    let dir = tiny_data_dir("load-samples");
    let all = data::load_dir(&dir).unwrap();
    let some = data::load_dir_samples(&dir, Samples::Only(&[2, 0]), Samples::Only(&[])).unwrap();
    assert_eq!(some.train, all.train.subset(&[2, 0]).unwrap());
    assert_eq!(some.test.len(), 0);
    assert_eq!(
        some.test.input_shape(),
        (2, 3),
        "an empty set keeps its shape"
    );
    assert_eq!((some.train.classes, some.test.classes), (5, 5));
    assert_eq!(data::load_train_labels(&dir).unwrap(), vec![2, 0, 1]);
    let error = data::load_dir_samples(&dir, Samples::Only(&[3]), Samples::All).unwrap_err();
    assert!(error.to_string().contains('3'), "{error}");
}

#[test]
fn truncated_file_is_reported_with_its_path_and_sizes() {
    let dir = temp_dir("truncated");
    let mut bytes = tiny_images();
    bytes.truncate(bytes.len() - 5);
    let path = write(&dir, "short", &bytes);
    let error = load_idx_images(&path).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::Truncated {
                expected: 34,
                found: 29,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("short") && message.contains("truncated"),
        "{message}"
    );

    // Even the header can be cut short, or the file empty.
    let header_only = write(&dir, "header", &tiny_images()[..7]);
    assert!(matches!(
        load_idx_images(&header_only),
        Err(DataError::Truncated { .. })
    ));
    let empty = write(&dir, "empty", &[]);
    assert!(matches!(
        load_idx_labels(&empty),
        Err(DataError::Truncated { .. })
    ));
    // A truncated gzip stream is a decompression error, not a silent short read.
    let gz = gzip(&tiny_images());
    let cut_gz = write(&dir, "cut.gz", &gz[..gz.len() / 2]);
    let error = load_idx_images(&cut_gz).unwrap_err();
    assert!(matches!(error, DataError::BadGzip { .. }), "{error:?}");
}

#[test]
fn wrong_magic_names_the_expected_kind_of_file() {
    let dir = temp_dir("magic");
    let labels = write(&dir, "labels-not-images", &tiny_labels());
    let error = load_idx_images(&labels).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::BadMagic {
                found: 0x0801,
                expected: 0x0803,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("labels-not-images"));
    assert!(error.to_string().contains("image"));

    let text = write(&dir, "readme.txt", b"this is not an IDX file");
    assert!(matches!(
        load_idx_labels(&text),
        Err(DataError::BadMagic { .. })
    ));
    // Right magic layout but a float type code (0x0D) is not the unsigned-byte format.
    let floats = write(&dir, "floats", &[0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(matches!(
        load_idx_labels(&floats),
        Err(DataError::BadMagic { .. })
    ));
}

#[test]
fn wrong_sizes_are_rejected() {
    let dir = temp_dir("sizes");
    // Trailing bytes: header says 3 labels, file holds 4.
    let long = write(&dir, "long", &idx_bytes(&[3], &[1, 2, 3, 4]));
    let error = load_idx_labels(&long).unwrap_err();
    assert!(
        matches!(error, DataError::BadDimensions { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("trailing"));
    // Images with a zero side.
    let flat = write(&dir, "flat", &idx_bytes(&[2, 0, 5], &[]));
    assert!(matches!(
        load_idx_images(&flat),
        Err(DataError::BadDimensions { .. })
    ));
    // Dimensions whose product overflows must not allocate or panic.
    let huge = write(
        &dir,
        "huge",
        &idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]),
    );
    assert!(load_idx_images(&huge).is_err());
}

#[test]
fn mismatched_image_and_label_counts_name_both_files() {
    let dir = temp_dir("mismatch");
    write(&dir, "train-images-idx3-ubyte", &tiny_images());
    write(&dir, "train-labels-idx1-ubyte", &idx_bytes(&[2], &[0, 1]));
    write(&dir, "t10k-images-idx3-ubyte", &tiny_images());
    write(&dir, "t10k-labels-idx1-ubyte", &tiny_labels());
    let error = data::load_dir(&dir).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("train-images-idx3-ubyte") && message.contains("train-labels-idx1-ubyte")
    );
}

#[test]
fn train_and_test_images_of_different_sizes_are_rejected() {
    let dir = temp_dir("shape");
    write(&dir, "train-images-idx3-ubyte", &tiny_images());
    write(&dir, "train-labels-idx1-ubyte", &tiny_labels());
    write(
        &dir,
        "t10k-images-idx3-ubyte",
        &idx_bytes(&[1, 3, 2], &[0; 6]),
    );
    write(&dir, "t10k-labels-idx1-ubyte", &idx_bytes(&[1], &[0]));
    assert!(matches!(
        data::load_dir(&dir),
        Err(DataError::ShapeMismatch { .. })
    ));
}

#[test]
fn missing_directory_points_at_the_debian_package() {
    let dir = temp_dir("missing").join("nowhere");
    let error = data::load_dir(&dir).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, DataError::MissingFile { .. }));
    assert!(
        message.contains("apt-get install dataset-fashion-mnist"),
        "{message}"
    );
    assert!(message.contains("train-images-idx3-ubyte.gz"), "{message}");
}

/// The real data set as the Debian package installs it. Fails (never skips) without it.
#[test]
fn debian_fashion_mnist_loads_with_its_published_shape() {
    let split = data::load_dir(Path::new(data::DEFAULT_DATA_DIR)).unwrap_or_else(|e| {
        panic!("Fashion-MNIST is required: install it with `apt-get install dataset-fashion-mnist` ({e})")
    });
    assert_eq!(split.train.images.dim(), (60_000, 784));
    assert_eq!(split.test.images.dim(), (10_000, 784));
    assert_eq!(
        (split.train.rows, split.train.cols, split.train.classes),
        (28, 28, 10)
    );
    // Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert_eq!(split.train.class_counts(), vec![6_000; 10]);
    assert_eq!(split.test.class_counts(), vec![1_000; 10]);
    let max = split.train.images.iter().copied().fold(0.0_f32, f32::max);
    assert_eq!(max, 1.0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Hostile input never panics (issue #15, item 3): any bytes, or a valid-looking header with
    /// any dimensions over any body, plain or gzipped, as images and as labels — a matrix or
    /// an error, and a loaded matrix always has the shape its header declares.
    #[test]
    fn any_file_loads_or_is_an_error(
        dims in proptest::collection::vec(
            proptest::prop_oneof![0_u32..5, proptest::prelude::any::<u32>()], 0..4),
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        raw in proptest::prelude::any::<bool>(),
        gzip in proptest::prelude::any::<bool>(),
    ) {
        let dir = temp_dir("proptest");
        let bytes = if raw { body.clone() } else { idx_bytes(&dims, &body) };
        let bytes = if gzip {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(&bytes).unwrap();
            encoder.finish().unwrap()
        } else {
            bytes
        };
        let path = dir.join("file");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok((images, rows, cols)) = load_idx_images(&path) {
            proptest::prop_assert_eq!(images.ncols(), rows * cols);
        }
        let _ = load_idx_labels(&path);
    }
}
