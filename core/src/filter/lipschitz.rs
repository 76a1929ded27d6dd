//! The Lipschitz filter: accept a pulled model iff the empirical Lipschitz coefficient
//! k_t = ‖g_t − g_{t−1}‖ / ‖θ_t − θ_{t−1}‖ is at most the 100·(n_ps − f_ps)/n_ps percentile of
//! the coefficients seen so far (PAPER.md §5). A model a Byzantine server crafted to look close
//! while moving the gradient a lot shows up as an unusually large k.

/// Keeps every finite coefficient seen (accepted or not) and judges new ones against them.
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

    /// The empirical coefficient between two (model, gradient) pairs, or None when neither
    /// moved (no information).
    ///
    /// A model that did not move while the gradient did gives +∞, which [`Self::check`]
    /// refuses: between two steps a correct server always applies a non-zero update, so the
    /// same model twice means a server replaying an old one. Without this, a server that sends
    /// the model of its last gather for T steps in a row (what equivocation looks like once the
    /// correct servers agree) passed both filters, and workers computing gradients at that
    /// frozen point broke training (quickstart in synchronous mode: 10 % accuracy).
    pub fn coefficient(gradient_delta_norm: f64, model_delta_norm: f64) -> Option<f64> {
        if !(model_delta_norm.is_finite() && gradient_delta_norm.is_finite()) {
            return None;
        }
        if model_delta_norm > 0.0 {
            Some(gradient_delta_norm / model_delta_norm)
        } else {
            (gradient_delta_norm > 0.0).then_some(f64::INFINITY)
        }
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
    fn a_model_that_did_not_move_while_the_gradient_did_is_refused_even_in_warmup() {
        let mut filter = LipschitzFilter::new(5, 1, 3);
        let frozen = LipschitzFilter::coefficient(0.4, 0.0).expect("a coefficient");
        assert!(!filter.check(frozen), "a replayed model must fail");
        assert_eq!(
            LipschitzFilter::coefficient(0.0, 0.0),
            None,
            "nothing moved: no information"
        );
        assert_eq!(LipschitzFilter::coefficient(f64::NAN, 1.0), None);
        assert_eq!(LipschitzFilter::coefficient(2.0, 4.0), Some(0.5));
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
