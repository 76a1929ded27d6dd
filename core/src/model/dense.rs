//! Fully connected networks: multinomial logistic regression (no hidden layer) and the MLP with
//! ReLU hidden layers, including the paper's 784-100-10 MNIST model (El-Mhamdi et al., PODC
//! 2020, §6: "a fully connected network with one hidden layer of 100 units").

use std::sync::Mutex;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ShapeError};

use super::{Model, ModelError, ops};

/// Rows per forward pass in [`Model::evaluate`]: large enough for efficient matrix products,
/// small enough that a 10,000-sample test set needs only a few hundred KiB of scratch.
const EVAL_CHUNK: usize = 256;

/// A stack of dense layers, ReLU between them, softmax cross-entropy on top.
///
/// # Parameter layout
///
/// For each layer `l` in order from the input: the weight matrix `W_l` of shape
/// `fan_in × fan_out`, row-major (so a batch is `X · W_l`, one sample per row), then the bias
/// `b_l` of length `fan_out`. MLP 784-100-10: `W_1` at 0 (78,400), `b_1` at 78,400 (100),
/// `W_2` at 78,500 (1,000), `b_2` at 79,500 (10); 79,510 in all. This is PyTorch's
/// `nn.Linear` weight transposed.
///
/// # Initialization
///
/// Hidden layers: He normal; output layer: Glorot uniform; biases zero.
#[derive(Debug)]
pub struct Dense {
    /// `widths[0]` is the input length, `widths[last]` the class count.
    widths: Vec<usize>,
    /// Offset of each layer's weight matrix in the flat vector (its bias follows it).
    offsets: Vec<usize>,
    num_params: usize,
    scratch: Mutex<Workspace>,
}

/// Per-batch activations, reused across calls and grown only when a larger batch arrives.
#[derive(Debug, Default)]
struct Workspace {
    /// Rows the buffers hold.
    capacity: usize,
    /// Post-activation output of each layer (the last one holds logits, then their gradient).
    activations: Vec<Array2<f32>>,
    /// Gradient with respect to a hidden layer's output before the ReLU mask is applied.
    delta: Array2<f32>,
}

impl Workspace {
    fn ensure(&mut self, rows: usize, widths: &[usize]) {
        if rows <= self.capacity && self.activations.len() == widths.len() - 1 {
            return;
        }
        self.capacity = rows;
        self.activations = widths[1..]
            .iter()
            .map(|&w| Array2::zeros((rows, w)))
            .collect();
        let widest_hidden = widths[1..widths.len() - 1]
            .iter()
            .copied()
            .max()
            .unwrap_or(0);
        self.delta = Array2::zeros((rows, widest_hidden));
    }
}

impl Dense {
    /// A network `input → hidden[0] → … → classes`; `hidden` empty gives logistic regression.
    pub(crate) fn new(input: usize, hidden: &[usize], classes: usize) -> Result<Self, ModelError> {
        let mut widths = Vec::with_capacity(hidden.len() + 2);
        widths.push(input);
        widths.extend_from_slice(hidden);
        widths.push(classes);
        let mut offsets = Vec::with_capacity(widths.len() - 1);
        let mut num_params = 0_usize;
        for pair in widths.windows(2) {
            offsets.push(num_params);
            let layer = pair[0]
                .checked_mul(pair[1])
                .and_then(|w| w.checked_add(pair[1]))
                .ok_or(ModelError::TooLarge { what: "parameter" })?;
            num_params = num_params
                .checked_add(layer)
                .ok_or(ModelError::TooLarge { what: "parameter" })?;
        }
        Ok(Self {
            widths,
            offsets,
            num_params,
            scratch: Mutex::new(Workspace::default()),
        })
    }

    fn layers(&self) -> usize {
        self.widths.len() - 1
    }

    /// Forward pass of `x` (its `rows ≤ ws.capacity`) into `ws.activations[..][..rows]`.
    fn forward(
        &self,
        ws: &mut Workspace,
        params: &[f32],
        x: &ArrayView2<'_, f32>,
    ) -> Result<(), ShapeError> {
        let rows = x.nrows();
        let last = self.layers() - 1;
        for layer in 0..=last {
            let (fan_in, fan_out) = (self.widths[layer], self.widths[layer + 1]);
            let w = ops::matrix(params, self.offsets[layer], fan_in, fan_out)?;
            let b = ops::vector(params, self.offsets[layer] + fan_in * fan_out, fan_out)?;
            let (done, rest) = ws.activations.split_at_mut(layer);
            let mut z = ops::head_mut(&mut rest[0], rows);
            match done.last() {
                None => ops::gemm(1.0, x, &w, 0.0, &mut z),
                Some(prev) => ops::gemm(1.0, &ops::head(prev, rows), &w, 0.0, &mut z),
            }
            ops::add_bias(&mut z, &b);
            if layer < last {
                ops::relu(&mut z);
            }
        }
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
        let rows = x.nrows();
        ws.ensure(rows, &self.widths);
        self.forward(ws, params, x)?;
        let last = self.layers() - 1;
        let loss = {
            let mut logits = ops::head_mut(&mut ws.activations[last], rows);
            ops::softmax_xent_backward(&mut logits, labels)
        };
        // Backpropagation: on entry to iteration `layer`, activations[layer] holds d loss / d z.
        for layer in (0..=last).rev() {
            let (fan_in, fan_out) = (self.widths[layer], self.widths[layer + 1]);
            let (below, here) = ws.activations.split_at_mut(layer);
            let delta = ops::head(&here[0], rows);
            {
                let mut g_w = ops::matrix_mut(grad, self.offsets[layer], fan_in, fan_out)?;
                match below.last() {
                    None => ops::gemm(1.0, &x.t(), &delta, 0.0, &mut g_w),
                    Some(input) => {
                        ops::gemm(1.0, &ops::head(input, rows).t(), &delta, 0.0, &mut g_w);
                    }
                }
            }
            let mut g_b = ops::vector_mut(grad, self.offsets[layer] + fan_in * fan_out, fan_out)?;
            ops::column_sums(&delta, &mut g_b);
            // The input layer's own input gradient is never needed: the data is not trained.
            if let Some(input) = below.last_mut() {
                let w = ops::matrix(params, self.offsets[layer], fan_in, fan_out)?;
                let mut back = ops::block_mut(&mut ws.delta, rows, fan_in);
                ops::gemm(1.0, &delta, &w.t(), 0.0, &mut back);
                ops::relu_backward(&mut ops::head_mut(input, rows), &back.view());
            }
        }
        Ok(loss / rows as f32)
    }

    fn shapes_ok(&self, params: usize, x: &ArrayView2<'_, f32>, labels: usize) -> bool {
        params == self.num_params && x.ncols() == self.widths[0] && labels == x.nrows()
    }
}

impl Model for Dense {
    fn num_params(&self) -> usize {
        self.num_params
    }

    fn input_len(&self) -> usize {
        self.widths[0]
    }

    fn classes(&self) -> usize {
        self.widths[self.widths.len() - 1]
    }

    fn init(&self, seed: u64) -> Array1<f32> {
        let layers: Vec<(usize, usize, usize)> = (0..self.layers())
            .map(|layer| {
                (
                    self.offsets[layer],
                    self.widths[layer],
                    self.widths[layer + 1],
                )
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
        ws.ensure(EVAL_CHUNK.min(x.nrows()), &self.widths);
        let last = self.layers() - 1;
        ops::evaluate_in_chunks(&params, &x, labels, EVAL_CHUNK, |p, rows, chunk_labels| {
            self.forward(&mut ws, p, rows)?;
            let logits = ops::head(&ws.activations[last], rows.nrows());
            Ok(ops::softmax_xent_eval(&logits, chunk_labels))
        })
    }
}
