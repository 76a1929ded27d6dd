//! A small convolutional network for single-channel images such as (Fashion-)MNIST:
//! conv 5×5×8 → ReLU → max-pool 2 → conv 5×5×16 → ReLU → max-pool 2 → dense 64 → ReLU →
//! dense `classes`, softmax cross-entropy.
//!
//! Convolutions are "valid" (no padding, stride 1) and computed as one matrix product per layer
//! over an im2col matrix (Chellapilla et al., "High Performance Convolutional Neural Networks
//! for Document Processing", 2006), so they reuse the dense layers' GEMM kernel. Activations are
//! stored NHWC: one row per (sample, y, x), one column per channel, which makes both the im2col
//! rows and the flattening before the dense layers plain contiguous copies.

use std::sync::Mutex;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ShapeError};

use super::{Model, ModelError, ops};

/// Convolution kernel side.
const K: usize = 5;
/// Output channels of the first convolution.
const C1: usize = 8;
/// Output channels of the second convolution.
const C2: usize = 16;
/// Width of the hidden dense layer.
const HIDDEN: usize = 64;
/// Rows per forward pass in [`Model::evaluate`].
const EVAL_CHUNK: usize = 128;
/// Smallest image side that leaves at least one pixel after conv-pool-conv-pool:
/// `((side − 4) / 2 − 4) / 2 ≥ 1`.
const MIN_SIDE: usize = 16;

/// The CNN described in the module docs.
///
/// # Parameter layout
///
/// In order: conv1 weights (`25 × 8`, row = kernel offset `ky·5 + kx`), conv1 bias (8); conv2
/// weights (`200 × 16`, row = `(ky·5 + kx)·8 + input channel`), conv2 bias (16); dense1 weights
/// (`flat × 64`, row = `(y·w + x)·16 + channel` of the last pooled map), dense1 bias (64);
/// dense2 weights (`64 × classes`), dense2 bias. On 28×28 inputs with 10 classes:
/// 208 + 3,216 + 16,448 + 650 = 20,522 parameters.
///
/// # Initialization
///
/// He normal for both convolutions and dense1 (fan-in = kernel area × input channels), Glorot
/// uniform for dense2, zero biases.
#[derive(Debug)]
pub struct Cnn {
    geo: Geometry,
    classes: usize,
    /// Offsets of conv1 W, conv2 W, dense1 W, dense2 W (each bias follows its weights).
    offsets: [usize; 4],
    num_params: usize,
    scratch: Mutex<Workspace>,
}

/// Spatial sizes of every stage, fixed at build time.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    rows: usize,
    cols: usize,
    /// conv1 output.
    h1: usize,
    w1: usize,
    /// pool1 output.
    ph1: usize,
    pw1: usize,
    /// conv2 output.
    h2: usize,
    w2: usize,
    /// pool2 output.
    ph2: usize,
    pw2: usize,
}

impl Geometry {
    fn flat(&self) -> usize {
        self.ph2 * self.pw2 * C2
    }
}

/// Per-batch buffers, grown only when a larger batch arrives.
#[derive(Debug, Default)]
struct Workspace {
    capacity: usize,
    col1: Array2<f32>,
    a1: Array2<f32>,
    p1: Array2<f32>,
    arg1: Vec<usize>,
    col2: Array2<f32>,
    a2: Array2<f32>,
    p2: Array2<f32>,
    arg2: Vec<usize>,
    a3: Array2<f32>,
    a4: Array2<f32>,
    // Backward only.
    d3: Array2<f32>,
    dp2: Array2<f32>,
    da2: Array2<f32>,
    dcol2: Array2<f32>,
    dp1: Array2<f32>,
    da1: Array2<f32>,
}

impl Workspace {
    fn ensure(&mut self, rows: usize, g: &Geometry, classes: usize, backward: bool) {
        let have_backward = self.d3.nrows() >= rows;
        if rows <= self.capacity && (have_backward || !backward) {
            return;
        }
        let (n1, p1, n2) = (rows * g.h1 * g.w1, rows * g.ph1 * g.pw1, rows * g.h2 * g.w2);
        self.capacity = rows;
        self.col1 = Array2::zeros((n1, K * K));
        self.a1 = Array2::zeros((n1, C1));
        self.p1 = Array2::zeros((p1, C1));
        self.arg1 = vec![0; p1 * C1];
        self.col2 = Array2::zeros((n2, K * K * C1));
        self.a2 = Array2::zeros((n2, C2));
        self.p2 = Array2::zeros((rows, g.flat()));
        self.arg2 = vec![0; rows * g.flat()];
        self.a3 = Array2::zeros((rows, HIDDEN));
        self.a4 = Array2::zeros((rows, classes));
        if backward {
            self.d3 = Array2::zeros((rows, HIDDEN));
            self.dp2 = Array2::zeros((rows, g.flat()));
            self.da2 = Array2::zeros((n2, C2));
            self.dcol2 = Array2::zeros((n2, K * K * C1));
            self.dp1 = Array2::zeros((p1, C1));
            self.da1 = Array2::zeros((n1, C1));
        }
    }
}

/// Copies 5×5 patches of single-channel images (`batch × rows·cols`) into `col`
/// (`batch·h·w × 25`).
fn im2col_single(x: &ArrayView2<'_, f32>, g: &Geometry, col: &mut [f32]) {
    let mut out = col.chunks_exact_mut(K * K);
    for image in x.rows() {
        for y in 0..g.h1 {
            for xx in 0..g.w1 {
                let Some(patch) = out.next() else { return };
                for ky in 0..K {
                    let base = (y + ky) * g.cols + xx;
                    for kx in 0..K {
                        patch[ky * K + kx] = image[base + kx];
                    }
                }
            }
        }
    }
}

/// Copies 5×5×C1 patches of the pooled NHWC map `p1` into `col` (`batch·h2·w2 × 200`).
fn im2col_multi(p1: &[f32], batch: usize, g: &Geometry, col: &mut [f32]) {
    let mut out = col.chunks_exact_mut(K * K * C1);
    for b in 0..batch {
        for y in 0..g.h2 {
            for x in 0..g.w2 {
                let Some(patch) = out.next() else { return };
                for ky in 0..K {
                    let src = ((b * g.ph1 + y + ky) * g.pw1 + x) * C1;
                    let dst = ky * K * C1;
                    patch[dst..dst + K * C1].copy_from_slice(&p1[src..src + K * C1]);
                }
            }
        }
    }
}

/// Adjoint of [`im2col_multi`]: accumulates patch gradients back onto the pooled map.
fn col2im_multi(dcol: &[f32], batch: usize, g: &Geometry, dp1: &mut [f32]) {
    dp1.fill(0.0);
    let mut patches = dcol.chunks_exact(K * K * C1);
    for b in 0..batch {
        for y in 0..g.h2 {
            for x in 0..g.w2 {
                let Some(patch) = patches.next() else { return };
                for ky in 0..K {
                    let dst = ((b * g.ph1 + y + ky) * g.pw1 + x) * C1;
                    let src = ky * K * C1;
                    for (d, &v) in dp1[dst..dst + K * C1]
                        .iter_mut()
                        .zip(&patch[src..src + K * C1])
                    {
                        *d += v;
                    }
                }
            }
        }
    }
}

/// 2×2 max-pooling, stride 2, of an NHWC map (`batch·h·w × ch`, flat) into `out`
/// (`batch·(h/2)·(w/2) × ch`, flat), recording in `arg` the flat index of each maximum.
/// An odd last row or column is dropped, as PyTorch's `MaxPool2d` does by default.
fn max_pool(
    input: &[f32],
    batch: usize,
    (h, w, ch): (usize, usize, usize),
    out: &mut [f32],
    arg: &mut [usize],
) {
    let (ph, pw) = (h / 2, w / 2);
    let mut out = out.chunks_exact_mut(ch).zip(arg.chunks_exact_mut(ch));
    for b in 0..batch {
        for py in 0..ph {
            for px in 0..pw {
                let Some((out, arg)) = out.next() else { return };
                // The four pixels of the window, each a run of `ch` channel values; the scan
                // order (0,0), (0,1), (1,0), (1,1) with strict `>` makes the first maximum win.
                let top = ((b * h + 2 * py) * w + 2 * px) * ch;
                let starts = [top, top + ch, top + w * ch, top + (w + 1) * ch];
                out.copy_from_slice(&input[top..top + ch]);
                arg.iter_mut().zip(top..).for_each(|(a, i)| *a = i);
                for &start in &starts[1..] {
                    let pixel = &input[start..start + ch];
                    for (c, &v) in pixel.iter().enumerate() {
                        if v > out[c] {
                            out[c] = v;
                            arg[c] = start + c;
                        }
                    }
                }
            }
        }
    }
}

/// Adjoint of [`max_pool`] followed by the ReLU that precedes it: routes each pooled gradient to
/// the position of its maximum, if that unit was active.
fn max_pool_relu_backward(dout: &[f32], arg: &[usize], activation: &[f32], din: &mut [f32]) {
    din.fill(0.0);
    for (&d, &i) in dout.iter().zip(arg) {
        if activation[i] > 0.0 {
            din[i] += d;
        }
    }
}

/// `(fan_in, fan_out)` of the weight matrix of each stage: conv1, conv2, dense1, dense2.
fn stage_shapes(flat: usize, classes: usize) -> [(usize, usize); 4] {
    [
        (K * K, C1),
        (K * K * C1, C2),
        (flat, HIDDEN),
        (HIDDEN, classes),
    ]
}

impl Cnn {
    pub(crate) fn new(rows: usize, cols: usize, classes: usize) -> Result<Self, ModelError> {
        if rows < MIN_SIDE || cols < MIN_SIDE {
            return Err(ModelError::InputTooSmallForCnn {
                rows,
                cols,
                min_side: MIN_SIDE,
            });
        }
        let (h1, w1) = (rows - (K - 1), cols - (K - 1));
        let (ph1, pw1) = (h1 / 2, w1 / 2);
        let (h2, w2) = (ph1 - (K - 1), pw1 - (K - 1));
        let geo = Geometry {
            rows,
            cols,
            h1,
            w1,
            ph1,
            pw1,
            h2,
            w2,
            ph2: h2 / 2,
            pw2: w2 / 2,
        };
        let too_large = ModelError::TooLarge {
            what: "cnn parameter",
        };
        let shapes = stage_shapes(geo.flat(), classes);
        let mut offsets = [0; 4];
        let mut num_params = 0_usize;
        for (offset, (fan_in, fan_out)) in offsets.iter_mut().zip(shapes) {
            *offset = num_params;
            num_params = fan_in
                .checked_add(1)
                .and_then(|f| f.checked_mul(fan_out))
                .and_then(|n| n.checked_add(num_params))
                .ok_or(too_large.clone())?;
        }
        Ok(Self {
            geo,
            classes,
            offsets,
            num_params,
            scratch: Mutex::new(Workspace::default()),
        })
    }

    /// Weight matrix and bias of stage `i` (0 = conv1 … 3 = dense2).
    fn layer<'p>(
        &self,
        params: &'p [f32],
        i: usize,
    ) -> Result<(ArrayView2<'p, f32>, ArrayView1<'p, f32>), ShapeError> {
        let (fan_in, fan_out) = self.shape(i);
        let w = ops::matrix(params, self.offsets[i], fan_in, fan_out)?;
        let b = ops::vector(params, self.offsets[i] + fan_in * fan_out, fan_out)?;
        Ok((w, b))
    }

    fn shape(&self, i: usize) -> (usize, usize) {
        stage_shapes(self.geo.flat(), self.classes)[i.min(3)]
    }

    /// Forward pass of `x` (`rows ≤ ws.capacity`); logits end in `ws.a4[..rows]`.
    fn forward(
        &self,
        ws: &mut Workspace,
        params: &[f32],
        x: &ArrayView2<'_, f32>,
    ) -> Result<(), ShapeError> {
        let g = &self.geo;
        let rows = x.nrows();
        let (n1, np1, n2) = (rows * g.h1 * g.w1, rows * g.ph1 * g.pw1, rows * g.h2 * g.w2);
        let cols = |a: &Array2<f32>| a.ncols();

        let col1 = ws.col1.as_slice_mut().ok_or_else(layout_error)?;
        im2col_single(x, g, &mut col1[..n1 * K * K]);
        let (w, b) = self.layer(params, 0)?;
        let mut a1 = ops::head_mut(&mut ws.a1, n1);
        ops::gemm(1.0, &ops::head(&ws.col1, n1), &w, 0.0, &mut a1);
        ops::add_bias(&mut a1, &b);
        ops::relu(&mut a1);

        let (p1_len, a1_len) = (np1 * C1, n1 * C1);
        max_pool(
            &ws.a1.as_slice().ok_or_else(layout_error)?[..a1_len],
            rows,
            (g.h1, g.w1, C1),
            &mut ws.p1.as_slice_mut().ok_or_else(layout_error)?[..p1_len],
            &mut ws.arg1[..p1_len],
        );

        let width2 = cols(&ws.col2);
        im2col_multi(
            &ws.p1.as_slice().ok_or_else(layout_error)?[..p1_len],
            rows,
            g,
            &mut ws.col2.as_slice_mut().ok_or_else(layout_error)?[..n2 * width2],
        );
        let (w, b) = self.layer(params, 1)?;
        let mut a2 = ops::head_mut(&mut ws.a2, n2);
        ops::gemm(1.0, &ops::head(&ws.col2, n2), &w, 0.0, &mut a2);
        ops::add_bias(&mut a2, &b);
        ops::relu(&mut a2);

        let flat_len = rows * g.flat();
        max_pool(
            &ws.a2.as_slice().ok_or_else(layout_error)?[..n2 * C2],
            rows,
            (g.h2, g.w2, C2),
            &mut ws.p2.as_slice_mut().ok_or_else(layout_error)?[..flat_len],
            &mut ws.arg2[..flat_len],
        );

        let (w, b) = self.layer(params, 2)?;
        let mut a3 = ops::head_mut(&mut ws.a3, rows);
        ops::gemm(1.0, &ops::head(&ws.p2, rows), &w, 0.0, &mut a3);
        ops::add_bias(&mut a3, &b);
        ops::relu(&mut a3);

        let (w, b) = self.layer(params, 3)?;
        let mut a4 = ops::head_mut(&mut ws.a4, rows);
        ops::gemm(1.0, &ops::head(&ws.a3, rows), &w, 0.0, &mut a4);
        ops::add_bias(&mut a4, &b);
        Ok(())
    }

    /// Gradient of one dense-or-conv stage: `W += input^T · delta`, `b = Σ rows of delta`.
    fn weight_grad(
        &self,
        grad: &mut [f32],
        i: usize,
        input: &ArrayView2<'_, f32>,
        delta: &ArrayView2<'_, f32>,
    ) -> Result<(), ShapeError> {
        let (fan_in, fan_out) = self.shape(i);
        let mut g_w = ops::matrix_mut(grad, self.offsets[i], fan_in, fan_out)?;
        ops::gemm(1.0, &input.t(), delta, 0.0, &mut g_w);
        let mut g_b = ops::vector_mut(grad, self.offsets[i] + fan_in * fan_out, fan_out)?;
        ops::column_sums(delta, &mut g_b);
        Ok(())
    }

    fn train_step(
        &self,
        ws: &mut Workspace,
        params: &[f32],
        x: &ArrayView2<'_, f32>,
        labels: &[u8],
        grad: &mut [f32],
    ) -> Result<f32, ShapeError> {
        let g = self.geo;
        let rows = x.nrows();
        ws.ensure(rows, &g, self.classes, true);
        self.forward(ws, params, x)?;
        let (n1, np1, n2) = (rows * g.h1 * g.w1, rows * g.ph1 * g.pw1, rows * g.h2 * g.w2);
        let flat_len = rows * g.flat();

        let loss = ops::softmax_xent_backward(&mut ops::head_mut(&mut ws.a4, rows), labels);
        let d4 = ops::head(&ws.a4, rows);

        // dense2
        self.weight_grad(grad, 3, &ops::head(&ws.a3, rows), &d4)?;
        let (w, _) = self.layer(params, 3)?;
        let mut d3 = ops::head_mut(&mut ws.d3, rows);
        ops::gemm(1.0, &d4, &w.t(), 0.0, &mut d3);
        ops::relu_backward(&mut ops::head_mut(&mut ws.a3, rows), &d3.view());
        let d3 = ops::head(&ws.a3, rows);

        // dense1
        self.weight_grad(grad, 2, &ops::head(&ws.p2, rows), &d3)?;
        let (w, _) = self.layer(params, 2)?;
        let mut dp2 = ops::head_mut(&mut ws.dp2, rows);
        ops::gemm(1.0, &d3, &w.t(), 0.0, &mut dp2);

        // pool2 + ReLU, then conv2
        max_pool_relu_backward(
            &ws.dp2.as_slice().ok_or_else(layout_error)?[..flat_len],
            &ws.arg2[..flat_len],
            &ws.a2.as_slice().ok_or_else(layout_error)?[..n2 * C2],
            &mut ws.da2.as_slice_mut().ok_or_else(layout_error)?[..n2 * C2],
        );
        let da2 = ops::head(&ws.da2, n2);
        self.weight_grad(grad, 1, &ops::head(&ws.col2, n2), &da2)?;
        let (w, _) = self.layer(params, 1)?;
        let mut dcol2 = ops::head_mut(&mut ws.dcol2, n2);
        ops::gemm(1.0, &da2, &w.t(), 0.0, &mut dcol2);
        let width2 = ws.dcol2.ncols();
        col2im_multi(
            &ws.dcol2.as_slice().ok_or_else(layout_error)?[..n2 * width2],
            rows,
            &g,
            &mut ws.dp1.as_slice_mut().ok_or_else(layout_error)?[..np1 * C1],
        );

        // pool1 + ReLU, then conv1 (its input gradient is never needed).
        max_pool_relu_backward(
            &ws.dp1.as_slice().ok_or_else(layout_error)?[..np1 * C1],
            &ws.arg1[..np1 * C1],
            &ws.a1.as_slice().ok_or_else(layout_error)?[..n1 * C1],
            &mut ws.da1.as_slice_mut().ok_or_else(layout_error)?[..n1 * C1],
        );
        self.weight_grad(grad, 0, &ops::head(&ws.col1, n1), &ops::head(&ws.da1, n1))?;
        Ok(loss / rows as f32)
    }

    fn shapes_ok(&self, params: usize, x: &ArrayView2<'_, f32>, labels: usize) -> bool {
        params == self.num_params && x.ncols() == self.input_len() && labels == x.nrows()
    }
}

/// Workspace arrays are created by `Array2::zeros` and so always contiguous; this error marks
/// the impossible case instead of panicking.
fn layout_error() -> ShapeError {
    ShapeError::from_kind(ndarray::ErrorKind::IncompatibleLayout)
}

impl Model for Cnn {
    fn num_params(&self) -> usize {
        self.num_params
    }

    fn input_len(&self) -> usize {
        self.geo.rows * self.geo.cols
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn init(&self, seed: u64) -> Array1<f32> {
        let layers: Vec<(usize, usize, usize)> = (0..4)
            .map(|i| {
                let (fan_in, fan_out) = self.shape(i);
                (self.offsets[i], fan_in, fan_out)
            })
            .collect();
        ops::init_layers(self.num_params, seed, &layers)
    }

    fn loss_and_gradient(
        &self,
        params: ArrayView1<'_, f32>,
        x: ArrayView2<'_, f32>,
        labels: &[u8],
        mut grad: ArrayViewMut1<'_, f32>,
    ) -> f32 {
        let ok = self.shapes_ok(params.len(), &x, labels.len()) && grad.len() == self.num_params;
        debug_assert!(ok, "loss_and_gradient: shapes do not match the model");
        if !ok || x.nrows() == 0 {
            grad.fill(f32::NAN);
            return f32::NAN;
        }
        ops::with_scratch(&self.scratch, |ws| {
            ops::on_slices(&params, &mut grad, |p, g| {
                self.train_step(ws, p, &x, labels, g)
            })
        })
    }

    fn evaluate(
        &self,
        params: ArrayView1<'_, f32>,
        x: ArrayView2<'_, f32>,
        labels: &[u8],
    ) -> (f32, f32) {
        let ok = self.shapes_ok(params.len(), &x, labels.len());
        debug_assert!(ok, "evaluate: shapes do not match the model");
        if !ok || x.nrows() == 0 {
            return (f32::NAN, f32::NAN);
        }
        // Evaluation has its own scratch so it can run while another thread trains.
        let mut ws = Workspace::default();
        ws.ensure(EVAL_CHUNK.min(x.nrows()), &self.geo, self.classes, false);
        ops::evaluate_in_chunks(&params, &x, labels, EVAL_CHUNK, |p, rows, chunk_labels| {
            self.forward(&mut ws, p, rows)?;
            let logits = ops::head(&ws.a4, rows.nrows());
            Ok(ops::softmax_xent_eval(&logits, chunk_labels))
        })
    }
}
