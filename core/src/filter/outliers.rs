//! The outliers filter: accept a pulled model θ iff
//! ‖θ − θ_local‖ ≤ η·‖g‖·[(3T + 2)(n_w − f_w)/(4·f_w) + 2·((t − 1) mod T)]
//! where θ_local is the worker's own estimate of the model (PAPER.md §5, from the legacy TF
//! code's `--smart` mode; the constant is unverified against the paper's text).
//!
//! With f_w = 0 no worker can be Byzantine, the bound is infinite and every model passes.

/// The largest distance between a pulled model and the worker's local estimate that the filter
/// accepts at step `step`.
pub fn outliers_bound(
    learning_rate: f32,
    gradient_norm: f64,
    gather_every: u64,
    workers: usize,
    byzantine_workers: usize,
    step: u64,
) -> f64 {
    if byzantine_workers == 0 {
        return f64::INFINITY;
    }
    let t = gather_every as f64;
    let correct = (workers - byzantine_workers) as f64;
    let since_gather = (step.saturating_sub(1) % gather_every.max(1)) as f64;
    f64::from(learning_rate)
        * gradient_norm
        * ((3.0 * t + 2.0) * correct / (4.0 * byzantine_workers as f64) + 2.0 * since_gather)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_matches_the_formula_and_grows_within_a_scatter_phase() {
        // η = 0.1, ‖g‖ = 2, T = 10, n_w = 7, f_w = 2, t = 4:
        // 0.1·2·[(32·5)/8 + 2·3] = 0.2·26 = 5.2
        let bound = outliers_bound(0.1, 2.0, 10, 7, 2, 4);
        assert!((bound - 5.2).abs() < 1e-6, "{bound}");
        assert!(outliers_bound(0.1, 2.0, 10, 7, 2, 5) > bound);
    }

    #[test]
    fn without_byzantine_workers_everything_passes() {
        assert!(outliers_bound(0.1, 2.0, 10, 7, 0, 4).is_infinite());
    }
}
