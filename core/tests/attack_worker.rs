//! Worker attacks: each behaviour sends what its source describes, deterministically per
//! (seed, step, receiver), and no input makes one panic.
#![allow(
    clippy::float_cmp,
    reason = "attacks must be bit-exact reproducible and some outputs are exact by construction"
)]

use byzsgd_core::attack::{
    AttackParams, WorkerAttack, WorkerAttackKind, WorkerView, alie_z, flip_labels,
};
use ndarray::{Array1, ArrayView1, array};
use proptest::prelude::*;

/// Three honest gradients of dimension 4 with different means and spreads per coordinate.
fn honest_set() -> Vec<Array1<f32>> {
    vec![
        array![1.0, -2.0, 0.5, 4.0],
        array![3.0, -1.0, 0.0, 2.0],
        array![2.0, -3.0, 1.0, 3.0],
    ]
}

/// Inputs of one `craft` call, owned so tests can vary one field at a time.
#[derive(Clone)]
struct Call {
    honest: Vec<Array1<f32>>,
    own: Array1<f32>,
    step: u64,
    receiver: usize,
    n: usize,
    f: usize,
    seed: u64,
}

impl Call {
    fn new(honest: Vec<Array1<f32>>, own: Array1<f32>) -> Self {
        Self {
            honest,
            own,
            step: 5,
            receiver: 1,
            n: 7,
            f: 2,
            seed: 42,
        }
    }

    fn run(&self, attack: &WorkerAttack) -> Option<Array1<f32>> {
        let views: Vec<ArrayView1<'_, f32>> = self.honest.iter().map(|v| v.view()).collect();
        let view = WorkerView {
            honest: &views,
            own: self.own.view(),
            step: self.step,
            receiver: self.receiver,
            n: self.n,
            f: self.f,
            seed: self.seed,
            rule: None,
        };
        attack.craft(&view)
    }

    fn sent(&self, attack: &WorkerAttack) -> Array1<f32> {
        self.run(attack)
            .expect("worker attacks always send a vector")
    }
}

fn with(kind: WorkerAttackKind, params: AttackParams) -> WorkerAttack {
    WorkerAttack { kind, params }
}

/// Bit patterns, so vectors holding NaN compare equal when they are identical.
fn bits(v: &Array1<f32>) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Coordinate-wise mean of the honest set, computed plainly as the reference.
fn honest_mean(honest: &[Array1<f32>]) -> Vec<f64> {
    let d = honest[0].len();
    (0..d)
        .map(|j| honest.iter().map(|v| f64::from(v[j])).sum::<f64>() / honest.len() as f64)
        .collect()
}

fn assert_close(got: &Array1<f32>, expected: &[f64], tolerance: f64) {
    assert_eq!(got.len(), expected.len());
    for (j, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (f64::from(g) - e).abs() <= tolerance,
            "coordinate {j}: got {g}, expected {e}"
        );
    }
}

#[test]
fn every_worker_attack_is_deterministic_per_seed_step_and_receiver() {
    let call = Call::new(honest_set(), array![0.5, 1.5, -2.5, 3.5]);
    for kind in WorkerAttackKind::ALL {
        let attack = WorkerAttack::new(kind);
        let first = call.sent(&attack);
        let second = call.clone().sent(&attack);
        assert_eq!(bits(&first), bits(&second), "{kind} is not reproducible");
    }
}

/// Randomised attacks draw per (seed, step, receiver): changing any of the three changes the
/// vector, so a Byzantine worker can send different noise to different servers.
#[test]
fn randomised_worker_attacks_change_with_seed_step_and_receiver() {
    let d = 1000;
    let base = Call::new(Vec::new(), Array1::from_elem(d, 1.0));
    for kind in [
        WorkerAttackKind::Random,
        WorkerAttackKind::Gaussian,
        WorkerAttackKind::PartialDrop,
    ] {
        let attack = WorkerAttack::new(kind);
        let reference = base.sent(&attack);
        let mut seed = base.clone();
        seed.seed += 1;
        let mut step = base.clone();
        step.step += 1;
        let mut receiver = base.clone();
        receiver.receiver += 1;
        for (what, call) in [("seed", seed), ("step", step), ("receiver", receiver)] {
            assert_ne!(call.sent(&attack), reference, "{kind} ignores the {what}");
        }
    }
}

/// Baruch et al. (NeurIPS 2019, §3): s = ⌊n/2 + 1⌋ − f supporters, z = Φ⁻¹((n − s)/n).
/// Φ⁻¹ reference values are from Python's `statistics.NormalDist().inv_cdf`.
#[test]
fn alie_z_matches_baruch_et_al_formula() {
    let cases = [
        // n = 20, f = 8: s = ⌊11⌋ − 8 = 3, (20 − 3)/20 = 0.85, Φ⁻¹(0.85) = 1.0364…
        // (Garfield hard-codes 1.035 for this setting, PAPER.md §6).
        (20, 8, 1.036_433_389_493_789_4),
        // n = 50, f = 24: s = 26 − 24 = 2, 48/50 = 0.96, Φ⁻¹(0.96) = 1.7507… (Baruch et al.'s
        // own example setting).
        (50, 24, 1.750_686_071_252_169_5),
        // n = 7, f = 2: s = ⌊4.5⌋ − 2 = 2, 5/7 = 0.714285…, Φ⁻¹(5/7) = 0.5659…
        (7, 2, 0.565_948_821_932_863_1),
        // n = 10, f = 3: s = 6 − 3 = 3, 7/10 = 0.7, Φ⁻¹(0.7) = 0.5244…
        (10, 3, 0.524_400_512_708_040_7),
        // n = 4, f = 1: s = 3 − 1 = 2, 2/4 = 0.5, Φ⁻¹(0.5) = 0: the median is already safe.
        (4, 1, 0.0),
    ];
    for (n, f, expected) in cases {
        let z = alie_z(n, f).expect("z is defined for n ≥ 3f + 1");
        assert!(
            (z - expected).abs() < 1e-8,
            "z(n = {n}, f = {f}) = {z}, expected {expected}"
        );
    }
}

#[test]
fn alie_z_is_an_error_where_the_formula_is_infinite() {
    // n = 7, f = 4: s = 4 − 4 = 0, (7 − 0)/7 = 1 → Φ⁻¹(1) = +∞.
    assert!(alie_z(7, 4).is_err());
    // n = 2, f = 0: s = 2, (2 − 2)/2 = 0 → Φ⁻¹(0) = −∞.
    assert!(alie_z(2, 0).is_err());
    assert!(alie_z(0, 0).is_err());
}

#[test]
fn alie_sends_mean_minus_z_standard_deviations() {
    let honest = honest_set();
    let call = Call::new(honest.clone(), array![0.0, 0.0, 0.0, 0.0]);
    let mean = honest_mean(&honest);
    let std: Vec<f64> = (0..mean.len())
        .map(|j| {
            let var = honest
                .iter()
                .map(|v| (f64::from(v[j]) - mean[j]).powi(2))
                .sum::<f64>()
                / honest.len() as f64;
            var.sqrt()
        })
        .collect();
    let expect = |z: f64| -> Vec<f64> { mean.iter().zip(&std).map(|(m, s)| m - z * s).collect() };

    let derived = call.sent(&WorkerAttack::new(WorkerAttackKind::Alie));
    assert_close(&derived, &expect(alie_z(7, 2).unwrap()), 1e-5);

    let explicit = AttackParams {
        z: Some(1.5),
        ..AttackParams::default()
    };
    let fixed = call.sent(&with(WorkerAttackKind::Alie, explicit));
    assert_close(&fixed, &expect(1.5), 1e-5);
}

/// The default z depends on n and f rather than being a constant.
#[test]
fn alie_default_z_follows_n_and_f() {
    let mut small = Call::new(honest_set(), array![0.0, 0.0, 0.0, 0.0]);
    small.n = 7;
    small.f = 2;
    let mut large = small.clone();
    large.n = 50;
    large.f = 24;
    let attack = WorkerAttack::new(WorkerAttackKind::Alie);
    assert_ne!(small.sent(&attack), large.sent(&attack));
}

#[test]
fn fall_of_empires_is_anti_aligned_with_the_honest_mean() {
    let honest = honest_set();
    let call = Call::new(honest.clone(), array![0.0, 0.0, 0.0, 0.0]);
    let mean = honest_mean(&honest);
    for (params, epsilon) in [
        (AttackParams::default(), 0.1),
        (
            AttackParams {
                epsilon: Some(10.0),
                ..AttackParams::default()
            },
            10.0,
        ),
    ] {
        let sent = call.sent(&with(WorkerAttackKind::Foe, params));
        let inner: f64 = sent.iter().zip(&mean).map(|(&x, m)| f64::from(x) * m).sum();
        assert!(inner < 0.0, "⟨foe, mean⟩ = {inner} must be negative");
        let expected: Vec<f64> = mean.iter().map(|m| -epsilon * m).collect();
        assert_close(&sent, &expected, 1e-5);
    }
}

#[test]
fn sign_flip_sends_the_negated_honest_mean() {
    let honest = honest_set();
    let call = Call::new(honest.clone(), array![9.0, 9.0, 9.0, 9.0]);
    let expected: Vec<f64> = honest_mean(&honest).iter().map(|m| -m).collect();
    assert_close(
        &call.sent(&WorkerAttack::new(WorkerAttackKind::SignFlip)),
        &expected,
        1e-6,
    );
}

#[test]
fn nan_and_infinity_attacks_send_non_finite_vectors() {
    let call = Call::new(honest_set(), array![1.0, 2.0, 3.0]);
    let nan = call.sent(&WorkerAttack::new(WorkerAttackKind::Nan));
    let inf = call.sent(&WorkerAttack::new(WorkerAttackKind::Inf));
    let neg = call.sent(&WorkerAttack::new(WorkerAttackKind::NegInf));
    for v in [&nan, &inf, &neg] {
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|x| !x.is_finite()));
    }
    assert!(nan.iter().all(|x| x.is_nan()));
    assert!(inf.iter().all(|&x| x == f32::INFINITY));
    assert!(neg.iter().all(|&x| x == f32::NEG_INFINITY));
}

#[test]
fn reverse_scales_own_gradient_by_minus_100_unless_told_otherwise() {
    let call = Call::new(honest_set(), array![1.0, -0.5, 0.0]);
    assert_eq!(
        call.sent(&WorkerAttack::new(WorkerAttackKind::Reverse)),
        array![-100.0, 50.0, 0.0]
    );
    let factor = AttackParams {
        factor: Some(3.0),
        ..AttackParams::default()
    };
    assert_eq!(
        call.sent(&with(WorkerAttackKind::Reverse, factor)),
        array![3.0, -1.5, 0.0]
    );
}

#[test]
fn partial_drop_zeroes_exactly_the_requested_share_of_coordinates() {
    let own = Array1::from_shape_fn(1000, |i| i as f32 + 1.0);
    let call = Call::new(Vec::new(), own.clone());
    for (params, zeros) in [
        (AttackParams::default(), 300),
        (
            AttackParams {
                fraction: Some(0.25),
                ..AttackParams::default()
            },
            250,
        ),
    ] {
        let sent = call.sent(&with(WorkerAttackKind::PartialDrop, params));
        assert_eq!(sent.iter().filter(|&&x| x == 0.0).count(), zeros);
        // Every coordinate that survived is untouched.
        assert!(sent.iter().zip(&own).all(|(&s, &o)| s == 0.0 || s == o));
    }
}

#[test]
fn mimic_copies_the_target_honest_gradient() {
    let honest = honest_set();
    let call = Call::new(honest.clone(), array![0.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        call.sent(&WorkerAttack::new(WorkerAttackKind::Mimic)),
        honest[0]
    );
    let target = |t| AttackParams {
        target: Some(t),
        ..AttackParams::default()
    };
    assert_eq!(
        call.sent(&with(WorkerAttackKind::Mimic, target(2))),
        honest[2]
    );
    // Indices past the visible inputs wrap around instead of panicking.
    assert_eq!(
        call.sent(&with(WorkerAttackKind::Mimic, target(4))),
        honest[1]
    );
}

/// Sample mean and standard deviation of `v`.
fn moments(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let count = v.clone().count() as f64;
    let mean = v.clone().sum::<f64>() / count;
    let var = v.map(|x| (x - mean).powi(2)).sum::<f64>() / count;
    (mean, var.sqrt())
}

#[test]
fn random_and_gaussian_noise_have_the_requested_spread() {
    let d = 20_000;
    let own = Array1::from_shape_fn(d, |i| (i % 7) as f32);
    let call = Call::new(Vec::new(), own.clone());

    let scale = AttackParams {
        scale: Some(3.0),
        ..AttackParams::default()
    };
    let random = call.sent(&with(WorkerAttackKind::Random, scale));
    let (mean, std) = moments(random.iter().map(|&x| f64::from(x)));
    // With 20 000 draws the sample mean is within 0.1 (≈ 4.7 standard errors) of 0 and the
    // sample deviation within 3 % of 3.
    assert!(mean.abs() < 0.1, "mean {mean}");
    assert!((std - 3.0).abs() < 0.09, "std {std}");

    let noise = AttackParams {
        std: Some(0.5),
        ..AttackParams::default()
    };
    let noisy = call.sent(&with(WorkerAttackKind::Gaussian, noise));
    let (mean, std) = moments(noisy.iter().zip(&own).map(|(&x, &o)| f64::from(x - o)));
    assert!(mean.abs() < 0.02, "noise mean {mean}");
    assert!((std - 0.5).abs() < 0.015, "noise std {std}");
}

/// Without visible honest gradients the omniscient attacks use the attacker's own gradient.
#[test]
fn omniscient_attacks_fall_back_to_the_own_gradient() {
    let own = array![1.0, -2.0, 4.0];
    let call = Call::new(Vec::new(), own.clone());
    let sent = |kind| call.sent(&WorkerAttack::new(kind));
    assert_eq!(sent(WorkerAttackKind::Alie), own);
    assert_eq!(sent(WorkerAttackKind::Mimic), own);
    assert_eq!(sent(WorkerAttackKind::SignFlip), -&own);
    assert_close(&sent(WorkerAttackKind::Foe), &[-0.1, 0.2, -0.4], 1e-6);
}

/// Honest vectors of another dimension cannot be this step's gradients: they are ignored.
#[test]
fn honest_vectors_of_the_wrong_length_are_ignored() {
    let mut honest = honest_set();
    honest.push(array![100.0, 100.0]);
    let call = Call::new(honest, array![0.0, 0.0, 0.0, 0.0]);
    let reference = Call::new(honest_set(), array![0.0, 0.0, 0.0, 0.0]);
    for kind in [
        WorkerAttackKind::Alie,
        WorkerAttackKind::Foe,
        WorkerAttackKind::SignFlip,
    ] {
        let attack = WorkerAttack::new(kind);
        assert_eq!(call.sent(&attack), reference.sent(&attack), "{kind}");
    }
}

#[test]
fn label_flip_maps_y_to_classes_minus_one_minus_y() {
    let mut labels = vec![0, 1, 4, 5, 9];
    flip_labels(&mut labels, 10);
    assert_eq!(labels, vec![9, 8, 5, 4, 0]);
    // Out-of-range labels are invalid data and stay as they are; no class count panics.
    let mut odd = vec![12, 2];
    flip_labels(&mut odd, 10);
    assert_eq!(odd, vec![12, 7]);
    flip_labels(&mut odd, 0);
    assert_eq!(odd, vec![12, 7]);
}

#[test]
fn only_label_flip_acts_on_data_and_it_sends_the_own_gradient() {
    for kind in WorkerAttackKind::ALL {
        assert_eq!(
            WorkerAttack::new(kind).flips_labels(),
            kind == WorkerAttackKind::LabelFlip
        );
    }
    let own = array![0.25, -1.0];
    let call = Call::new(honest_set(), own.clone());
    assert_eq!(
        call.sent(&WorkerAttack::new(WorkerAttackKind::LabelFlip)),
        own
    );
}

fn any_params() -> impl Strategy<Value = AttackParams> {
    let real = || proptest::option::of(any::<f64>());
    (
        (real(), real(), real(), real(), real()),
        (
            real(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<usize>()),
            real(),
        ),
    )
        .prop_map(
            |((scale, factor, fraction, std, z), (epsilon, lag, target, strength))| AttackParams {
                scale,
                factor,
                fraction,
                std,
                z,
                epsilon,
                lag,
                target,
                strength,
            },
        )
}

proptest! {
    /// Bad input never panics: any parameters (NaN, ±∞, huge), any n, f, receiver and step,
    /// honest vectors of any length, and the vector sent always has the own gradient's length.
    #[test]
    fn worker_attacks_never_panic_and_keep_the_dimension(
        kind in proptest::sample::select(WorkerAttackKind::ALL.to_vec()),
        params in any_params(),
        d in 0usize..12,
        honest_lengths in proptest::collection::vec(0usize..12, 0..5),
        n in any::<usize>(),
        f in any::<usize>(),
        receiver in any::<usize>(),
        step in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let honest = honest_lengths
            .iter()
            .enumerate()
            .map(|(k, &len)| Array1::from_shape_fn(len, |i| (k * 3 + i) as f32 - 4.0))
            .collect();
        let call = Call {
            honest,
            own: Array1::from_shape_fn(d, |i| i as f32 * 0.5 - 1.0),
            step,
            receiver,
            n,
            f,
            seed,
        };
        let attack = with(kind, params);
        let sent = call.run(&attack);
        prop_assert_eq!(sent.map(|v| v.len()), Some(d));
        let _ = attack.validate(n, f);
    }
}

/// The Byzantine wrapper crafts once per receiver class and shares the vector with every
/// server of that class: receivers of one class must get bit-identical vectors.
#[test]
fn receivers_of_one_class_get_the_same_vector() {
    let call = Call::new(honest_set(), array![0.5, 1.5, -2.5, 3.5]);
    for kind in WorkerAttackKind::ALL {
        let attack = WorkerAttack::new(kind);
        for a in 0..5 {
            for b in 0..5 {
                let (mut to_a, mut to_b) = (call.clone(), call.clone());
                to_a.receiver = a;
                to_b.receiver = b;
                let equal = bits(&to_a.sent(&attack)) == bits(&to_b.sent(&attack));
                if attack.receiver_class(a) == attack.receiver_class(b) {
                    assert!(
                        equal,
                        "{kind}: receivers {a} and {b} share a class but differ"
                    );
                }
            }
        }
    }
}

/// Min-max and min-sum through the public attack, on the hand-computed case of
/// `attack::agnostic`: honest (2, 0), (0, 2), (0, 0) → min-max sends (1 − √3)(1, 1), min-sum
/// (0, 0).
#[test]
fn min_max_and_min_sum_send_the_farthest_mean_shift_their_bound_accepts() {
    let call = Call::new(
        vec![array![2.0, 0.0], array![0.0, 2.0], array![0.0, 0.0]],
        array![0.0, 0.0],
    );
    let a = 1.0 - 3.0_f64.sqrt();
    assert_close(
        &call.sent(&WorkerAttack::new(WorkerAttackKind::MinMax)),
        &[a, a],
        1e-4,
    );
    assert_close(
        &call.sent(&WorkerAttack::new(WorkerAttackKind::MinSum)),
        &[0.0, 0.0],
        1e-4,
    );
}
