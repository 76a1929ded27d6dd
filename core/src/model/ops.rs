//! Numerical kernels shared by the models: matrix products, the softmax cross-entropy head,
//! parameter initialization, and the glue that turns flat parameter slices into matrices.
//!
//! Everything here works on caller-provided buffers so the models' training step allocates
//! nothing.

use std::sync::{Mutex, TryLockError};

use ndarray::{
    Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, ShapeError, Slice,
    linalg::general_mat_mul,
};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Uniform};

/// `c = alpha · a · b + beta · c` on one thread.
///
/// ndarray's `general_mat_mul` dispatches to `matrixmultiply`, which packs both operands into
/// cache-sized panels and runs an FMA/AVX2 micro-kernel chosen at run time (SSE2 otherwise). It
/// accepts any strides, so transposed views cost nothing, and it is single-threaded because
/// the workspace never enables its `threading` feature. It was measured before reaching for
/// `gemm` or OpenBLAS and was enough: the MLP 784-100-10 trains at 1.1–2× PyTorch's
/// one-thread speed on the project's AMD EPYC machines (`byzsgd-node bench model`). Its only
/// allocation is its own packing buffer, a few KiB per call.
pub(crate) fn gemm(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    general_mat_mul(alpha, a, b, beta, c);
}

/// A `rows × cols` row-major matrix view of `len = rows·cols` values of a flat slice at `offset`.
pub(crate) fn matrix(
    flat: &[f32],
    offset: usize,
    rows: usize,
    cols: usize,
) -> Result<ArrayView2<'_, f32>, ShapeError> {
    let end = offset + rows * cols;
    let slice = flat
        .get(offset..end)
        .ok_or_else(|| ShapeError::from_kind(ndarray::ErrorKind::OutOfBounds))?;
    ArrayView2::from_shape((rows, cols), slice)
}

/// Mutable twin of [`matrix`].
pub(crate) fn matrix_mut(
    flat: &mut [f32],
    offset: usize,
    rows: usize,
    cols: usize,
) -> Result<ArrayViewMut2<'_, f32>, ShapeError> {
    let end = offset + rows * cols;
    let slice = flat
        .get_mut(offset..end)
        .ok_or_else(|| ShapeError::from_kind(ndarray::ErrorKind::OutOfBounds))?;
    ArrayViewMut2::from_shape((rows, cols), slice)
}

/// A vector view of `len` values of a flat slice at `offset`.
pub(crate) fn vector(
    flat: &[f32],
    offset: usize,
    len: usize,
) -> Result<ArrayView1<'_, f32>, ShapeError> {
    flat.get(offset..offset + len)
        .map(ArrayView1::from)
        .ok_or_else(|| ShapeError::from_kind(ndarray::ErrorKind::OutOfBounds))
}

/// Mutable twin of [`vector`].
pub(crate) fn vector_mut(
    flat: &mut [f32],
    offset: usize,
    len: usize,
) -> Result<ArrayViewMut1<'_, f32>, ShapeError> {
    flat.get_mut(offset..offset + len)
        .map(ArrayViewMut1::from)
        .ok_or_else(|| ShapeError::from_kind(ndarray::ErrorKind::OutOfBounds))
}

/// Adds the bias row vector `bias` to every row of `z`.
pub(crate) fn add_bias(z: &mut ArrayViewMut2<'_, f32>, bias: &ArrayView1<'_, f32>) {
    // Convolution outputs have 8–16 columns and tens of thousands of rows: per-row ndarray
    // iteration overhead dominates there, so contiguous data takes a plain-slice path.
    if let (Some(flat), Some(b)) = (z.as_slice_mut(), bias.as_slice()) {
        if !b.is_empty() {
            for row in flat.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(v, &bi)| *v += bi);
            }
        }
        return;
    }
    for mut row in z.rows_mut() {
        row += bias;
    }
}

/// Writes the column sums of `delta` into `out` (the bias gradient of a dense layer).
pub(crate) fn column_sums(delta: &ArrayView2<'_, f32>, out: &mut ArrayViewMut1<'_, f32>) {
    out.fill(0.0);
    if let (Some(flat), Some(sums)) = (delta.as_slice(), out.as_slice_mut()) {
        if !sums.is_empty() {
            for row in flat.chunks_exact(sums.len()) {
                sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            }
        }
        return;
    }
    for row in delta.rows() {
        *out += &row;
    }
}

/// In-place ReLU.
pub(crate) fn relu(z: &mut ArrayViewMut2<'_, f32>) {
    z.mapv_inplace(|v| v.max(0.0));
}

/// Backpropagates through a ReLU in place: `activation` (the layer's post-ReLU output) becomes
/// `delta` where the unit was active and 0 elsewhere. `a > 0` holds exactly where the
/// pre-activation was positive, so the pre-activation need not be kept.
pub(crate) fn relu_backward(activation: &mut ArrayViewMut2<'_, f32>, delta: &ArrayView2<'_, f32>) {
    ndarray::Zip::from(activation)
        .and(delta)
        .for_each(|a, &d| *a = if *a > 0.0 { d } else { 0.0 });
}

/// Softmax cross-entropy head, in place: turns `logits` into `d loss / d logits` for the MEAN
/// loss over the batch, and returns the summed (not mean) loss.
///
/// Stable form: `loss_i = logsumexp(z_i) − z_i[y_i]` with the row maximum subtracted before
/// exponentiating, so no exponent overflows; the gradient is `(softmax(z_i) − onehot(y_i)) / B`.
/// A label outside `0..classes` contributes neither loss nor gradient (see `Model`'s docs).
pub(crate) fn softmax_xent_backward(logits: &mut ArrayViewMut2<'_, f32>, labels: &[u8]) -> f32 {
    let batch = logits.nrows();
    let scale = 1.0 / batch as f32;
    let mut total = 0.0_f32;
    for (mut row, &label) in logits.axis_iter_mut(Axis(0)).zip(labels) {
        let label = usize::from(label);
        if label >= row.len() {
            row.fill(0.0);
            continue;
        }
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let target = row[label];
        let mut sum = 0.0_f32;
        row.mapv_inplace(|v| {
            let e = (v - max).exp();
            sum += e;
            e
        });
        total += sum.ln() + max - target;
        let inv = scale / sum;
        row.mapv_inplace(|e| e * inv);
        row[label] -= scale;
    }
    total
}

/// Summed softmax cross-entropy and number of correct arg-max predictions, without gradient.
/// Ties in the arg-max go to the lowest class index.
pub(crate) fn softmax_xent_eval(logits: &ArrayView2<'_, f32>, labels: &[u8]) -> (f64, usize) {
    let mut total = 0.0_f64;
    let mut correct = 0;
    for (row, &label) in logits.axis_iter(Axis(0)).zip(labels) {
        let label = usize::from(label);
        let (mut best, mut max) = (0, f32::NEG_INFINITY);
        for (class, &v) in row.iter().enumerate() {
            if v > max {
                best = class;
                max = v;
            }
        }
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        if let Some(&target) = row.get(label) {
            total += f64::from(sum.ln() + max - target);
        }
        if best == label {
            correct += 1;
        }
    }
    (total, correct)
}

/// Fresh flat parameters for layers given as (offset, fan_in, fan_out): He normal for every
/// layer but the last (each followed by a ReLU), Glorot uniform for the output layer, zero
/// biases. Layers are drawn in order from one seeded generator.
pub(crate) fn init_layers(
    num_params: usize,
    seed: u64,
    layers: &[(usize, usize, usize)],
) -> ndarray::Array1<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut params = vec![0.0_f32; num_params];
    for (position, &(start, fan_in, fan_out)) in layers.iter().enumerate() {
        let weights = &mut params[start..start + fan_in * fan_out];
        if position + 1 < layers.len() {
            he_normal(weights, fan_in, &mut rng);
        } else {
            glorot_uniform(weights, fan_in, fan_out, &mut rng);
        }
    }
    ndarray::Array1::from(params)
}

/// He (Kaiming) normal initialization for a layer followed by a ReLU: `N(0, 2 / fan_in)`, which
/// keeps activation variance constant through ReLU layers (He et al., ICCV 2015, §2.2).
pub(crate) fn he_normal(out: &mut [f32], fan_in: usize, rng: &mut impl Rng) {
    let std = (2.0 / fan_in as f32).sqrt();
    match Normal::new(0.0_f32, std) {
        Ok(normal) => out.iter_mut().for_each(|w| *w = normal.sample(rng)),
        // Unreachable for fan_in >= 1 (build() rejects empty layers); zeros are still trainable.
        Err(_) => out.fill(0.0),
    }
}

/// Glorot (Xavier) uniform initialization for the output layer:
/// `U(−a, a)`, `a = sqrt(6 / (fan_in + fan_out))` (Glorot & Bengio, AISTATS 2010, eq. 16).
pub(crate) fn glorot_uniform(out: &mut [f32], fan_in: usize, fan_out: usize, rng: &mut impl Rng) {
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    match Uniform::new_inclusive(-limit, limit) {
        Ok(uniform) => out.iter_mut().for_each(|w| *w = uniform.sample(rng)),
        Err(_) => out.fill(0.0),
    }
}

/// Makes a contiguous copy of `view` only when it is not contiguous already.
fn contiguous<'a>(view: &'a ArrayView1<'_, f32>, copy: &'a mut Vec<f32>) -> &'a [f32] {
    if let Some(slice) = view.as_slice() {
        slice
    } else {
        copy.clear();
        copy.extend(view.iter().copied());
        copy
    }
}

/// Runs `f` with a model's shared scratch space, or with a fresh one if another thread holds
/// it: concurrent callers never wait on each other, and a single caller never allocates.
pub(crate) fn with_scratch<W: Default, R>(scratch: &Mutex<W>, f: impl FnOnce(&mut W) -> R) -> R {
    match scratch.try_lock() {
        Ok(mut ws) => f(&mut ws),
        // A panic while holding the lock leaves buffers whose contents are overwritten anyway.
        Err(TryLockError::Poisoned(poisoned)) => f(&mut poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => f(&mut W::default()),
    }
}

/// Runs a training step `step(params, grad)` on plain slices. Strided views (e.g. a column of
/// a matrix of candidate models) are copied to contiguous memory first, and back for `grad`.
/// An internal shape error yields a NaN loss and a NaN gradient instead of a panic.
pub(crate) fn on_slices(
    params: &ArrayView1<'_, f32>,
    grad: &mut ArrayViewMut1<'_, f32>,
    step: impl FnOnce(&[f32], &mut [f32]) -> Result<f32, ShapeError>,
) -> f32 {
    let mut params_copy = Vec::new();
    let flat = contiguous(params, &mut params_copy);
    let result = if let Some(g) = grad.as_slice_mut() {
        step(flat, g)
    } else {
        let mut g = vec![0.0; grad.len()];
        let result = step(flat, &mut g);
        grad.assign(&ArrayView1::from(&g));
        result
    };
    result.unwrap_or_else(|_| {
        grad.fill(f32::NAN);
        f32::NAN
    })
}

/// Mean loss and accuracy over `x` in chunks of `chunk` rows; `score(params, rows, labels)`
/// returns the summed loss and the number of correct predictions of one chunk. Any internal
/// shape error gives `(NaN, NaN)`.
pub(crate) fn evaluate_in_chunks(
    params: &ArrayView1<'_, f32>,
    x: &ArrayView2<'_, f32>,
    labels: &[u8],
    chunk: usize,
    mut score: impl FnMut(&[f32], &ArrayView2<'_, f32>, &[u8]) -> Result<(f64, usize), ShapeError>,
) -> (f32, f32) {
    let mut params_copy = Vec::new();
    let flat = contiguous(params, &mut params_copy);
    let (mut loss, mut correct) = (0.0_f64, 0_usize);
    for (rows, chunk_labels) in x.axis_chunks_iter(Axis(0), chunk).zip(labels.chunks(chunk)) {
        match score(flat, &rows, chunk_labels) {
            Ok((l, c)) => {
                loss += l;
                correct += c;
            }
            Err(_) => return (f32::NAN, f32::NAN),
        }
    }
    let n = x.nrows() as f64;
    ((loss / n) as f32, (correct as f64 / n) as f32)
}

/// The first `n` rows of a workspace buffer. (ndarray's `s!` macro expands to code marked
/// `allow(unsafe_code)`, which the workspace's `forbid(unsafe_code)` rejects.)
pub(crate) fn head(a: &Array2<f32>, n: usize) -> ArrayView2<'_, f32> {
    a.slice_axis(Axis(0), Slice::from(..n))
}

/// Mutable twin of [`head`].
pub(crate) fn head_mut(a: &mut Array2<f32>, n: usize) -> ArrayViewMut2<'_, f32> {
    a.slice_axis_mut(Axis(0), Slice::from(..n))
}

/// The top-left `rows × cols` block of a workspace buffer.
pub(crate) fn block_mut(a: &mut Array2<f32>, rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    let mut view = a.view_mut();
    view.slice_axis_inplace(Axis(0), Slice::from(..rows));
    view.slice_axis_inplace(Axis(1), Slice::from(..cols));
    view
}
