//! Any bytes as a data file: gzip detection and decompression, then the IDX image and label
//! parsers, with and without a selection of rows (a worker's shard).

#![no_main]

use std::path::Path;

use byzsgd_core::data::{gunzip_if_gzip, parse_idx_image_rows, parse_idx_labels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("<fuzz>");
    let Ok(bytes) = gunzip_if_gzip(path, data.to_vec()) else {
        return;
    };
    let _ = parse_idx_labels(path, &bytes);
    let _ = parse_idx_image_rows(path, &bytes, None);
    let rows: Vec<usize> = data.iter().take(8).map(|&b| usize::from(b)).collect();
    let _ = parse_idx_image_rows(path, &bytes, Some(&rows));
});
