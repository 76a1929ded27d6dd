//! Models trained by ByzSGD workers: logistic regression, the paper's MLP 784-100-10 and a small
//! CNN, plus the SGD optimizer that applies an aggregated gradient.
//!
//! Every model keeps its parameters in ONE flat `f32` vector: that vector is what workers send,
//! what servers aggregate with a GAR and what the gather phase compares, so the aggregation rules
//! never need to know a model's structure (El-Mhamdi et al., PODC 2020, §2: the model is a point
//! of R^d). Layers are views into that vector at fixed offsets computed once by
//! [`ModelSpec::build`]; the layout of each model is documented on its type.
//!
//! All models end in a numerically stable softmax cross-entropy (mean over the batch), compute
//! their gradient by hand-written backpropagation into a caller-provided buffer, and reuse
//! preallocated workspaces so a training step does not allocate.

mod cnn;
mod dense;
mod ops;
mod sgd;

use std::fmt;

pub use cnn::Cnn;
pub use dense::Dense;
use ndarray::{Array1, ArrayView1, ArrayView2, ArrayViewMut1};
use serde::{Deserialize, Serialize};
pub use sgd::Sgd;

/// Which model to train, as written in a job manifest.
///
/// Serialized with a `kind` tag: `{kind: logistic}`, `{kind: mlp, hidden: [100]}`,
/// `{kind: cnn}`. The MLP's `hidden` defaults to `[100]`, the paper's MNIST model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[cfg_attr(
    feature = "schema",
    schemars(transform = crate::schema::structural_tagged_union)
)]
pub enum ModelSpec {
    /// Multinomial logistic regression: one dense layer, softmax.
    Logistic,
    /// Multi-layer perceptron with ReLU hidden layers.
    Mlp {
        /// Width of each hidden layer, input side first. `[100]` on 28×28 inputs and 10
        /// classes is the paper's 784-100-10 network (79,510 parameters).
        #[serde(default = "default_hidden")]
        hidden: Vec<usize>,
    },
    /// The small convolutional network described on [`Cnn`].
    Cnn,
}

fn default_hidden() -> Vec<usize> {
    vec![100]
}

impl Default for ModelSpec {
    /// The paper's MNIST model: MLP 784-100-10.
    fn default() -> Self {
        Self::Mlp {
            hidden: default_hidden(),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Logistic => f.write_str("logistic"),
            Self::Mlp { hidden } => {
                f.write_str("mlp")?;
                for width in hidden {
                    write!(f, "-{width}")?;
                }
                Ok(())
            }
            Self::Cnn => f.write_str("cnn"),
        }
    }
}

impl ModelSpec {
    /// Builds the model for inputs of `input = (rows, cols)` pixels and `classes` classes.
    ///
    /// This is the only place shapes are validated: every later call trusts them.
    pub fn build(
        &self,
        input: (usize, usize),
        classes: usize,
    ) -> Result<Box<dyn Model>, ModelError> {
        let (rows, cols) = input;
        if rows == 0 || cols == 0 {
            return Err(ModelError::EmptyInput { rows, cols });
        }
        if classes < 2 {
            return Err(ModelError::TooFewClasses { classes });
        }
        let features = rows
            .checked_mul(cols)
            .ok_or(ModelError::TooLarge { what: "input" })?;
        match self {
            Self::Logistic => Ok(Box::new(Dense::new(features, &[], classes)?)),
            Self::Mlp { hidden } => {
                if let Some(layer) = hidden.iter().position(|&w| w == 0) {
                    return Err(ModelError::ZeroWidth { layer });
                }
                Ok(Box::new(Dense::new(features, hidden, classes)?))
            }
            Self::Cnn => Ok(Box::new(Cnn::new(rows, cols, classes)?)),
        }
    }
}

/// A differentiable classifier whose parameters are one flat `f32` vector.
///
/// Implementations are immutable descriptions of a network (shapes and offsets); the parameters
/// live outside, so one model serves any number of parameter vectors (a server's model, the
/// workers' models, the gather phase's candidates). Scratch memory is kept inside behind a lock
/// and reused between calls; concurrent callers each get their own scratch (the second one
/// allocates), so sharing a model across threads is correct, merely slower.
///
/// # Shapes
///
/// Callers are internal and pass data that [`ModelSpec::build`]'s arguments already describe:
/// `params.len() == grad.len() == num_params()`, `x.ncols() == input_len()`,
/// `labels.len() == x.nrows()`, every label `< classes()`. These are checked with
/// `debug_assert!`; in release builds a mismatch never panics: the loss is NaN and the gradient
/// is filled with NaN, which the transport's finite-value checks reject. A label `>= classes()`
/// in release builds contributes nothing to the loss or gradient of its batch.
pub trait Model: Send + Sync + fmt::Debug {
    /// Length of the flat parameter vector (MLP 784-100-10: 79,510).
    fn num_params(&self) -> usize;

    /// Number of input features per sample (rows × cols).
    fn input_len(&self) -> usize;

    /// Number of output classes.
    fn classes(&self) -> usize;

    /// Fresh parameters, deterministic for a seed: He initialization for layers followed by a
    /// ReLU, Glorot for the output layer, zero biases (documented per model).
    fn init(&self, seed: u64) -> Array1<f32>;

    /// Mean softmax cross-entropy over the batch; writes its gradient with respect to the
    /// parameters into `grad` (overwritten, same length as `params`).
    ///
    /// See the trait docs for the shape contract.
    fn loss_and_gradient(
        &self,
        params: ArrayView1<'_, f32>,
        x: ArrayView2<'_, f32>,
        labels: &[u8],
        grad: ArrayViewMut1<'_, f32>,
    ) -> f32;

    /// `(mean loss, accuracy in [0, 1])` over a whole data set, batched internally so memory
    /// stays bounded. An empty data set gives `(NaN, NaN)`: there is nothing to measure.
    fn evaluate(
        &self,
        params: ArrayView1<'_, f32>,
        x: ArrayView2<'_, f32>,
        labels: &[u8],
    ) -> (f32, f32);
}

/// Why a model could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The input image has no pixels.
    #[error("input shape {rows}x{cols} has no pixels; give the data set's image size (e.g. 28x28)")]
    EmptyInput {
        /// Rows given.
        rows: usize,
        /// Columns given.
        cols: usize,
    },
    /// Softmax classification needs two classes at least.
    #[error("{classes} classes given; a classifier needs at least 2 (the data set's label count)")]
    TooFewClasses {
        /// Classes given.
        classes: usize,
    },
    /// An MLP hidden layer of width zero would cut the network in two.
    #[error("mlp hidden layer {layer} has width 0; give every hidden layer a width >= 1")]
    ZeroWidth {
        /// Index of the offending layer in `hidden`.
        layer: usize,
    },
    /// The image is too small for the CNN's two 5x5 convolutions and two 2x2 poolings.
    #[error(
        "input {rows}x{cols} is too small for the cnn, which needs at least \
         {min_side}x{min_side}; use the mlp or logistic model for small inputs"
    )]
    InputTooSmallForCnn {
        /// Rows given.
        rows: usize,
        /// Columns given.
        cols: usize,
        /// Smallest side the CNN accepts.
        min_side: usize,
    },
    /// The parameter count would not fit in memory addressing.
    #[error("the {what} size overflows; use smaller layers or inputs")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
    },
}
