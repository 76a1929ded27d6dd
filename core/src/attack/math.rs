//! Numerical helpers the attacks share: the standard normal quantile Φ⁻¹, the z of "a little
//! is enough", coordinate-wise statistics of the honest vectors an attacker sees, and seeded
//! noise. Pure functions; no I/O.

use ndarray::{Array1, ArrayView1, Zip};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::StandardNormal;

use super::AttackError;

/// Coefficients of Acklam's rational approximation of Φ⁻¹ (P. J. Acklam, "An algorithm for
/// computing the inverse normal cumulative distribution function", 2003; relative error below
/// 1.15e-9 on (0, 1)). `A`/`B` are the numerator/denominator of the central region, `C`/`D` of
/// the tails.
// NB: digits are kept exactly as published (trailing zeros included) so they can be checked
// against the source.
#[allow(clippy::unreadable_literal, clippy::excessive_precision)]
const ACKLAM_A: [f64; 6] = [
    -3.969683028665376e+01,
    2.209460984245205e+02,
    -2.759285104469687e+02,
    1.383577518672690e+02,
    -3.066479806614716e+01,
    2.506628277459239e+00,
];
#[allow(clippy::unreadable_literal)]
const ACKLAM_B: [f64; 5] = [
    -5.447609879822406e+01,
    1.615858368580409e+02,
    -1.556989798598866e+02,
    6.680131188771972e+01,
    -1.328068155288572e+01,
];
#[allow(clippy::unreadable_literal)]
const ACKLAM_C: [f64; 6] = [
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e+00,
    -2.549732539343734e+00,
    4.374664141464968e+00,
    2.938163982698783e+00,
];
#[allow(clippy::unreadable_literal)]
const ACKLAM_D: [f64; 4] = [
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e+00,
    3.754408661907416e+00,
];
/// Below this probability (and above its complement) Acklam switches to the tail formula.
const ACKLAM_P_LOW: f64 = 0.02425;

/// Evaluates a polynomial with the highest-degree coefficient first (Horner's scheme).
fn horner(coefficients: &[f64], x: f64) -> f64 {
    coefficients.iter().fold(0.0, |acc, &c| acc.mul_add(x, c))
}

/// The tail branch of Acklam's approximation for a lower-tail probability `p < ACKLAM_P_LOW`.
fn acklam_lower_tail(p: f64) -> f64 {
    let q = (-2.0 * p.ln()).sqrt();
    horner(&ACKLAM_C, q) / horner(&ACKLAM_D, q).mul_add(q, 1.0)
}

/// The standard normal quantile Φ⁻¹(p): the z with P(Z ≤ z) = p for Z ~ N(0, 1).
///
/// Acklam's rational approximation (2003), relative error below 1.15e-9 — far finer than the
/// f32 vectors it scales. Returns −∞ at 0, +∞ at 1, and NaN outside [0, 1] or for NaN, so a
/// bad probability shows up in the result instead of panicking.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < ACKLAM_P_LOW {
        acklam_lower_tail(p)
    } else if p > 1.0 - ACKLAM_P_LOW {
        // Symmetry Φ⁻¹(p) = −Φ⁻¹(1 − p) keeps the tail formula's precision in the upper tail.
        -acklam_lower_tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        horner(&ACKLAM_A, r) * q / horner(&ACKLAM_B, r).mul_add(r, 1.0)
    }
}

/// The number of "supporters" s = ⌊n/2 + 1⌋ − f of Baruch et al. (2019, §3): how many correct
/// inputs the Byzantine value must look closer than for a majority-based rule to pick it.
/// `None` when s ≤ 0 (the Byzantine inputs are already a majority).
fn alie_supporters(n: usize, f: usize) -> Option<usize> {
    (n / 2 + 1).checked_sub(f).filter(|&s| s > 0)
}

/// The z of "a little is enough" derived from n and f (Baruch, Baruch, Goldberg, "A Little Is
/// Enough: Circumventing Defenses For Distributed Learning", NeurIPS 2019, §3):
/// s = ⌊n/2 + 1⌋ − f and z = Φ⁻¹((n − s)/n), the largest shift (in standard deviations) that
/// still leaves s correct inputs farther from the mean than the Byzantine one, for normally
/// distributed coordinates.
///
/// For example n = 20, f = 8 gives s = 3 and z = Φ⁻¹(0.85) ≈ 1.036, the constant Garfield
/// hard-codes. Fails when (n − s)/n is not strictly between 0 and 1, where z is infinite.
pub fn alie_z(n: usize, f: usize) -> Result<f64, AttackError> {
    match alie_supporters(n, f) {
        Some(s) if s < n => Ok(normal_quantile((n - s) as f64 / n as f64)),
        _ => Err(AttackError::AlieUndefined { n, f }),
    }
}

/// [`alie_z`] for use inside `craft`, which must always produce a vector: s is clamped into
/// 1..=n−1 (at least one supporter, at most all but one), the closest finite z to the formula;
/// n < 2 gives 0 (with at most one honest vector the spread is 0 and z has no effect anyway).
pub(crate) fn alie_z_saturating(n: usize, f: usize) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let s = alie_supporters(n, f).unwrap_or(1).min(n - 1);
    normal_quantile((n - s) as f64 / n as f64)
}

/// The honest vectors an attack may use: those with the same length as `own` (others cannot
/// belong to this step's model and are ignored rather than trusted), or `own` alone when none
/// is left, so omniscient attacks degrade to functions of the attacker's own gradient.
pub(crate) fn usable<'a>(
    honest: &[ArrayView1<'a, f32>],
    own: &ArrayView1<'a, f32>,
) -> Vec<ArrayView1<'a, f32>> {
    let mut kept: Vec<_> = honest
        .iter()
        .filter(|v| v.len() == own.len())
        .copied()
        .collect();
    if kept.is_empty() {
        kept.push(*own);
    }
    kept
}

/// Coordinate-wise mean of equally long, non-empty `vectors`, accumulated in f64 so that many
/// inputs do not lose the low bits of f32.
pub(crate) fn mean(vectors: &[ArrayView1<'_, f32>]) -> Array1<f64> {
    let d = vectors.first().map_or(0, ArrayView1::len);
    let mut acc = Array1::<f64>::zeros(d);
    for v in vectors {
        Zip::from(&mut acc)
            .and(v)
            .for_each(|a, &x| *a += f64::from(x));
    }
    acc / vectors.len().max(1) as f64
}

/// Coordinate-wise population standard deviation (divisor q, not q − 1) around `mean`.
///
/// The population form is used so a single visible vector gives a spread of 0 instead of NaN.
pub(crate) fn std_dev(vectors: &[ArrayView1<'_, f32>], mean: &Array1<f64>) -> Array1<f64> {
    let mut acc = Array1::<f64>::zeros(mean.len());
    for v in vectors {
        Zip::from(&mut acc).and(v).and(mean).for_each(|a, &x, &m| {
            let dev = f64::from(x) - m;
            *a += dev * dev;
        });
    }
    acc.mapv_into(|s| (s / vectors.len().max(1) as f64).sqrt())
}

/// "A little is enough" (Baruch et al. 2019, Algorithm 1): μ − z·σ, coordinate-wise over the
/// `honest` vectors — the largest per-coordinate shift that still leaves enough correct inputs
/// farther from the mean than the attacker. Shared by the worker (gradients) and server
/// (models at gather) forms of the attack.
pub(crate) fn alie(honest: &[ArrayView1<'_, f32>], z: f64) -> Array1<f32> {
    let mu = mean(honest);
    let sigma = std_dev(honest, &mu);
    Zip::from(&mu)
        .and(&sigma)
        .map_collect(|&m, &s| (m - z * s) as f32)
}

/// Coordinate-wise minimum and maximum of equally long, non-empty `vectors`.
pub(crate) fn min_max(vectors: &[ArrayView1<'_, f32>]) -> (Array1<f32>, Array1<f32>) {
    let d = vectors.first().map_or(0, ArrayView1::len);
    let mut lo = Array1::from_elem(d, f32::INFINITY);
    let mut hi = Array1::from_elem(d, f32::NEG_INFINITY);
    for v in vectors {
        Zip::from(&mut lo).and(&mut hi).and(v).for_each(|l, h, &x| {
            *l = l.min(x);
            *h = h.max(x);
        });
    }
    (lo, hi)
}

/// One step of the SplitMix64 generator (Steele, Lea, Flood, "Fast splittable pseudorandom
/// number generators", OOPSLA 2014): a bijective mixer, so distinct inputs give distinct,
/// well-scrambled outputs.
const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Separates the random streams of worker and server attacks that share a seed.
pub(crate) const WORKER_STREAM: u64 = 0x5752_4B52; // "WRKR"
/// See [`WORKER_STREAM`].
pub(crate) const SERVER_STREAM: u64 = 0x5352_5652; // "SRVR"

/// The generator for one (seed, step, receiver): every random choice of an attack comes from
/// here, which is what makes attacks reproducible and lets a Byzantine node send different
/// random values to different receivers.
pub(crate) fn attack_rng(stream: u64, seed: u64, step: u64, receiver: usize) -> StdRng {
    let mixed = splitmix64(splitmix64(splitmix64(seed ^ stream) ^ step) ^ receiver as u64);
    StdRng::seed_from_u64(mixed)
}

/// A vector of `d` independent N(0, scale²) draws.
pub(crate) fn gaussian(rng: &mut StdRng, d: usize, scale: f32) -> Array1<f32> {
    Array1::from_shape_simple_fn(d, || rng.sample::<f32, _>(StandardNormal) * scale)
}

/// Zeroes round(fraction·d) coordinates of `v` chosen uniformly without replacement. The
/// fraction is clamped into [0, 1]; NaN drops nothing.
pub(crate) fn drop_coordinates(v: &mut Array1<f32>, fraction: f64, rng: &mut StdRng) {
    let d = v.len();
    // NB: `as usize` saturates (NaN → 0), and `min` guards rounding up past d.
    let count = ((fraction.clamp(0.0, 1.0) * d as f64).round() as usize).min(d);
    for i in rand::seq::index::sample(rng, d, count) {
        v[i] = 0.0;
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "infinities and identical computations compare exactly"
)]
mod tests {
    use super::*;

    /// Φ⁻¹ must match reference quantiles (Python's `statistics.NormalDist().inv_cdf`, which
    /// uses Wichura's AS241) in the centre and both tails, including the region boundaries.
    #[test]
    fn normal_quantile_matches_reference_values() {
        let reference = [
            (0.001, -3.090_232_306_167_813),
            (0.02, -2.053_748_910_631_822_5),
            (0.02425, -1.972_961_051_311_884_5),
            (0.3, -0.524_400_512_708_040_7),
            (0.5, 0.0),
            (0.85, 1.036_433_389_493_789_4),
            (0.975, 1.959_963_984_540_053_6),
            (0.99, 2.326_347_874_040_840_8),
            (0.999_999, 4.753_424_308_817_089),
        ];
        for (p, expected) in reference {
            let got = normal_quantile(p);
            assert!(
                (got - expected).abs() <= 1e-8 * expected.abs().max(1.0),
                "Φ⁻¹({p}) = {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn normal_quantile_edges_are_infinite_or_nan() {
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(-0.1).is_nan());
        assert!(normal_quantile(1.5).is_nan());
        assert!(normal_quantile(f64::NAN).is_nan());
    }

    #[test]
    fn saturating_z_clamps_supporters_into_range() {
        // n = 7, f = 5: s = ⌊4.5⌋ − 5 < 0, clamped to 1 → Φ⁻¹(6/7).
        assert!((alie_z_saturating(7, 5) - normal_quantile(6.0 / 7.0)).abs() < 1e-12);
        // n = 2, f = 0: s = 2 = n, clamped to 1 → Φ⁻¹(1/2) = 0.
        assert!(alie_z_saturating(2, 0).abs() < 1e-12);
        assert!(alie_z_saturating(1, 0).abs() < 1e-12);
        assert!(alie_z_saturating(0, 3).abs() < 1e-12);
        // Inside the valid range it is the formula itself.
        assert_eq!(alie_z_saturating(20, 8), alie_z(20, 8).unwrap());
    }

    #[test]
    fn rng_streams_differ_by_every_input() {
        let draw =
            |stream, seed, step, receiver| attack_rng(stream, seed, step, receiver).random::<u64>();
        let base = draw(WORKER_STREAM, 1, 2, 3);
        assert_eq!(base, draw(WORKER_STREAM, 1, 2, 3));
        assert_ne!(base, draw(SERVER_STREAM, 1, 2, 3));
        assert_ne!(base, draw(WORKER_STREAM, 2, 2, 3));
        assert_ne!(base, draw(WORKER_STREAM, 1, 3, 3));
        assert_ne!(base, draw(WORKER_STREAM, 1, 2, 4));
    }
}
