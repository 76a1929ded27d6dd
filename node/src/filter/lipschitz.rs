//! The Lipschitz filter: accept a pulled model iff the empirical Lipschitz coefficient
//! k_t = ‖g_t − g_{t−1}‖ / ‖θ_t − θ_{t−1}‖ is at most the 100·(n_ps − f_ps)/n_ps percentile of
//! the coefficients seen so far (PAPER.md §5). A model a Byzantine server crafted to look close
//! while moving the gradient a lot shows up as an unusually large k.

/// Keeps the history of accepted coefficients.
#[derive(Debug, Clone)]
pub struct LipschitzFilter {
    history: Vec<f64>,
    quantile: f64,
    warmup: usize,
}

impl LipschitzFilter {
    /// A filter for n_ps servers of which f_ps may be Byzantine. The first `warmup`
    /// coefficients are accepted unconditionally: a percentile of nothing means nothing.
    pub fn new(servers: usize, byzantine_servers: usize, warmup: usize) -> Self {
        let quantile = if servers == 0 {
            1.0
        } else {
            (servers - byzantine_servers) as f64 / servers as f64
        };
        Self {
            history: Vec::new(),
            quantile,
            warmup,
        }
    }

    /// The empirical coefficient between two (model, gradient) pairs; None when the models are
    /// equal (no information).
    pub fn coefficient(gradient_delta_norm: f64, model_delta_norm: f64) -> Option<f64> {
        (model_delta_norm > 0.0 && model_delta_norm.is_finite() && gradient_delta_norm.is_finite())
            .then(|| gradient_delta_norm / model_delta_norm)
    }

    /// Whether `k` passes. Every finite coefficient joins the history, accepted or not: a
    /// history of accepted values only would ratchet the percentile down and end up refusing
    /// honest models. Honest models refused this way (about a fraction f_ps/n_ps of them, by
    /// construction of the percentile) only cost the worker a pull from another server.
    pub fn check(&mut self, k: f64) -> bool {
        if !k.is_finite() {
            return false;
        }
        let accept = self.history.len() < self.warmup || k <= self.threshold();
        self.history.push(k);
        accept
    }

    /// The current acceptance threshold (the configured percentile of the history).
    pub fn threshold(&self) -> f64 {
        if self.history.is_empty() {
            return f64::INFINITY;
        }
        let mut sorted = self.history.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((self.quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_during_warmup_then_rejects_outliers() {
        let mut filter = LipschitzFilter::new(5, 1, 3);
        for k in [1.0, 1.2, 0.9] {
            assert!(filter.check(k));
        }
        assert!(filter.check(1.1));
        assert!(
            !filter.check(50.0),
            "a coefficient far above the 80th percentile must fail"
        );
        assert!(!filter.check(f64::NAN));
    }

    #[test]
    fn threshold_is_the_configured_percentile() {
        let mut filter = LipschitzFilter::new(5, 1, 10);
        for k in 1..=10 {
            assert!(filter.check(f64::from(k)));
        }
        // 80th percentile of 1..=10 (nearest rank) is 8.
        assert!((filter.threshold() - 8.0).abs() < 1e-12);
    }
}
