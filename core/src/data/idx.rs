//! Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al.,
//! <http://yann.lecun.com/exdb/mnist/>, "FILE FORMATS FOR THE MNIST DATABASE"), raw or gzipped.
//!
//! An IDX file is: two zero bytes, a type code (`0x08` = unsigned byte, the only one used by
//! these data sets), the number of dimensions, each dimension as a big-endian `u32`, then the
//! values in row-major order. Images are 3-D (`count × rows × cols`), labels 1-D (`count`).
//! Gzip is recognised by its magic bytes `1f 8b`, whatever the file is called.

use std::{io::Read, path::Path};

use flate2::read::MultiGzDecoder;
use ndarray::Array2;

use super::DataError;

/// The type code of unsigned-byte IDX data.
const UBYTE: u8 = 0x08;
/// Gzip's two magic bytes (RFC 1952, §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads an IDX image file (`…-images-idx3-ubyte`, optionally `.gz`) into a
/// `count × (rows·cols)` matrix of pixels scaled from `0..=255` to `[0, 1]`, plus `(rows, cols)`.
pub fn load_idx_images(path: &Path) -> Result<(Array2<f32>, usize, usize), DataError> {
    load_idx_image_rows(path, None).map(|(images, rows, cols, _)| (images, rows, cols))
}

/// [`load_idx_images`] for the samples at `indices` only (in that order; `None`: all), plus the
/// file's total sample count. A worker converts its shard and a server nothing of the training
/// set, instead of every process holding all 60 000 images as floats (188 MB).
pub fn load_idx_image_rows(
    path: &Path,
    indices: Option<&[usize]>,
) -> Result<(Array2<f32>, usize, usize, usize), DataError> {
    let bytes = read_maybe_gzip(path)?;
    parse_idx_image_rows(path, &bytes, indices)
}

/// [`load_idx_image_rows`] on a file's contents already in memory (gunzipped): `path` only
/// names the file in errors. Pure, so it is what the fuzz target `idx` feeds.
pub fn parse_idx_image_rows(
    path: &Path,
    bytes: &[u8],
    indices: Option<&[usize]>,
) -> Result<(Array2<f32>, usize, usize, usize), DataError> {
    let (dims, body) = parse(path, bytes, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            detail: format!("images of {rows}x{cols} pixels have no pixels"),
        });
    }
    let scale = |&b: &u8| f32::from(b) / 255.0;
    let (selected, pixels): (usize, Vec<f32>) = match indices {
        None => (count, body.iter().map(scale).collect()),
        Some(indices) => {
            if let Some(&bad) = indices.iter().find(|&&i| i >= count) {
                return Err(DataError::IndexOutOfRange {
                    index: bad,
                    len: count,
                });
            }
            let size = rows * cols;
            let pixels = indices
                .iter()
                .flat_map(|&i| body[i * size..(i + 1) * size].iter().map(scale))
                .collect();
            (indices.len(), pixels)
        }
    };
    let images = Array2::from_shape_vec((selected, rows * cols), pixels).map_err(|e| {
        DataError::BadDimensions {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }
    })?;
    Ok((images, rows, cols, count))
}

/// Reads an IDX label file (`…-labels-idx1-ubyte`, optionally `.gz`).
pub fn load_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gzip(path)?;
    parse_idx_labels(path, &bytes)
}

/// [`load_idx_labels`] on a file's contents already in memory (gunzipped).
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let (_, body) = parse(path, bytes, 1)?;
    Ok(body.to_vec())
}

/// Whole file contents, gunzipped if they start with the gzip magic.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    gunzip_if_gzip(path, raw)
}

/// `raw` gunzipped if it starts with the gzip magic, else unchanged; `path` names the file in
/// errors.
pub fn gunzip_if_gzip(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| DataError::BadGzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Checks the header of an unsigned-byte IDX file with `want_dims` dimensions and returns the
/// dimensions and the body, whose length must be exactly their product.
fn parse<'b>(
    path: &Path,
    bytes: &'b [u8],
    want_dims: u8,
) -> Result<(Vec<usize>, &'b [u8]), DataError> {
    let expected_magic = u32::from(UBYTE) << 8 | u32::from(want_dims);
    let Some(magic) = bytes.get(..4) else {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: 4,
            found: bytes.len(),
        });
    };
    let magic = u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if magic != expected_magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected: expected_magic,
        });
    }
    let header = 4 + 4 * usize::from(want_dims);
    let Some(dim_bytes) = bytes.get(4..header) else {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: header,
            found: bytes.len(),
        });
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let body_len = dims
        .iter()
        .try_fold(1_usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::BadDimensions {
            path: path.to_path_buf(),
            detail: format!("dimensions {dims:?} overflow"),
        })?;
    let body = &bytes[header..];
    match body.len().cmp(&body_len) {
        std::cmp::Ordering::Less => Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: header + body_len,
            found: bytes.len(),
        }),
        std::cmp::Ordering::Greater => Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            detail: format!(
                "header declares {dims:?} = {body_len} bytes of data but the file holds {} \
                 (trailing bytes)",
                body.len()
            ),
        }),
        std::cmp::Ordering::Equal => Ok((dims, body)),
    }
}
