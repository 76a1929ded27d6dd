//! Stochastic gradient descent with momentum and weight decay, applied to a flat parameter
//! vector by whoever owns the model (a ByzSGD server after aggregating the workers' gradients).

use ndarray::{Array1, ArrayView1, ArrayViewMut1, Zip};

/// SGD with heavy-ball momentum and L2 weight decay, with PyTorch's `torch.optim.SGD` semantics
/// (dampening 0, no Nesterov):
///
/// ```text
/// g ← g + weight_decay · θ
/// v ← momentum · v + g        (v starts at 0, so the first step uses v = g)
/// θ ← θ − learning_rate · v
/// ```
///
/// With `momentum = 0` and `weight_decay = 0` this is plain SGD, `θ ← θ − η·g`, the update of
/// the paper (El-Mhamdi et al., PODC 2020, Algorithm 1, server step). The learning rate is a
/// public field so schedules can change it between steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Sgd {
    /// Step size η.
    pub learning_rate: f32,
    /// Momentum coefficient μ in `[0, 1)`; 0 disables momentum.
    pub momentum: f32,
    /// L2 penalty coefficient added to the gradient; 0 disables it.
    pub weight_decay: f32,
    velocity: Array1<f32>,
}

impl Sgd {
    /// An optimizer for `num_params` parameters with zero initial velocity.
    pub fn new(learning_rate: f32, momentum: f32, weight_decay: f32, num_params: usize) -> Self {
        Self {
            learning_rate,
            momentum,
            weight_decay,
            velocity: Array1::zeros(num_params),
        }
    }

    /// Applies one update in place. `params` and `grad` must both have the length given to
    /// [`Sgd::new`] (checked with `debug_assert!`; in release builds a mismatch fills
    /// `params` with NaN rather than panicking, so the error surfaces in the next check).
    // Views are the contract's currency and cost nothing to pass; taking `grad` by value keeps
    // call sites symmetric with `params`.
    #[allow(clippy::needless_pass_by_value)]
    pub fn step(&mut self, mut params: ArrayViewMut1<'_, f32>, grad: ArrayView1<'_, f32>) {
        let n = self.velocity.len();
        let ok = params.len() == n && grad.len() == n;
        debug_assert!(
            ok,
            "Sgd::step: params {} / grad {} / optimizer {n}",
            params.len(),
            grad.len()
        );
        if !ok {
            params.fill(f32::NAN);
            return;
        }
        let (lr, mu, wd) = (self.learning_rate, self.momentum, self.weight_decay);
        Zip::from(&mut params)
            .and(grad)
            .and(&mut self.velocity)
            .for_each(|theta, &g, v| {
                let g = g + wd * *theta;
                *v = mu * *v + g;
                *theta -= lr * *v;
            });
    }

    /// The momentum buffer `v`.
    pub fn velocity(&self) -> ArrayView1<'_, f32> {
        self.velocity.view()
    }

    /// Restores a momentum buffer saved with [`Sgd::velocity`] (a checkpoint); `None` when its
    /// length is not the optimizer's.
    pub fn restore_velocity(&mut self, velocity: &Array1<f32>) -> Option<()> {
        (velocity.len() == self.velocity.len()).then(|| self.velocity.assign(velocity))
    }

    /// Forgets the momentum (e.g. after a server adopts another server's model at a gather).
    pub fn reset(&mut self) {
        self.velocity.fill(0.0);
    }
}
