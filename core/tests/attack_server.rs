//! Server attacks: equivocation drives receivers apart while staying inside the honest
//! range, stale replay picks the right past model, silence sends nothing, and no input makes
//! an attack panic.
#![allow(
    clippy::float_cmp,
    reason = "attacks must be bit-exact reproducible and some outputs are exact by construction"
)]

use byzsgd_core::attack::{AttackParams, ServerAttack, ServerAttackKind, ServerView};
use ndarray::{Array1, ArrayView1, array};
use proptest::prelude::*;

/// Four correct servers' models of dimension 50, spread unevenly around different centres
/// (a fixed, non-symmetric pattern so mean, min and max all differ per coordinate).
fn honest_models() -> Vec<Array1<f32>> {
    (0..4)
        .map(|k| {
            Array1::from_shape_fn(50, |j| {
                let centre = (j as f32 * 0.37).sin();
                let offset = ((k * 7 + j * 3) % 11) as f32 / 10.0 - 0.3 * k as f32;
                centre + offset
            })
        })
        .collect()
}

/// Inputs of one `craft` call, owned so tests can vary one field at a time.
#[derive(Clone)]
struct Call {
    own: Array1<f32>,
    honest: Vec<Array1<f32>>,
    history: Vec<Array1<f32>>,
    step: u64,
    receiver: usize,
    receivers: usize,
    seed: u64,
}

impl Call {
    fn new(own: Array1<f32>, honest: Vec<Array1<f32>>) -> Self {
        Self {
            own,
            honest,
            history: Vec::new(),
            step: 3,
            receiver: 0,
            receivers: 6,
            seed: 7,
        }
    }

    fn run(&self, attack: &ServerAttack) -> Option<Array1<f32>> {
        let views: Vec<ArrayView1<'_, f32>> = self.honest.iter().map(|v| v.view()).collect();
        let view = ServerView {
            own: self.own.view(),
            honest: &views,
            history: &self.history,
            step: self.step,
            receiver: self.receiver,
            receivers: self.receivers,
            receiver_model: None,
            n: 5,
            f: 1,
            seed: self.seed,
        };
        attack.craft(&view)
    }

    fn sent_to(&self, attack: &ServerAttack, receiver: usize) -> Array1<f32> {
        let mut call = self.clone();
        call.receiver = receiver;
        call.run(attack).expect("this attack sends a model")
    }
}

fn strength(s: f64) -> ServerAttack {
    ServerAttack {
        kind: ServerAttackKind::Equivocate,
        params: AttackParams {
            strength: Some(s),
            ..AttackParams::default()
        },
    }
}

fn bits(v: &Array1<f32>) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Coordinate-wise mean, min and max of the honest models, computed plainly as the reference.
fn honest_stats(honest: &[Array1<f32>]) -> (Vec<f64>, Vec<f32>, Vec<f32>) {
    let d = honest[0].len();
    let column = |j: usize| honest.iter().map(move |v| v[j]);
    let mean = (0..d)
        .map(|j| column(j).map(f64::from).sum::<f64>() / honest.len() as f64)
        .collect();
    let lo = (0..d)
        .map(|j| column(j).fold(f32::INFINITY, f32::min))
        .collect();
    let hi = (0..d)
        .map(|j| column(j).fold(f32::NEG_INFINITY, f32::max))
        .collect();
    (mean, lo, hi)
}

#[test]
fn every_server_attack_is_deterministic_per_seed_step_and_receiver() {
    let mut call = Call::new(array![1.0, 2.0, 3.0], vec![array![0.0, 1.0, 2.0]]);
    call.history = vec![array![5.0, 5.0, 5.0]];
    for kind in ServerAttackKind::ALL {
        let attack = ServerAttack::new(kind);
        let first = call.run(&attack);
        let second = call.clone().run(&attack);
        assert_eq!(
            first.as_ref().map(bits),
            second.as_ref().map(bits),
            "{kind} is not reproducible"
        );
    }
}

#[test]
fn random_server_models_differ_per_receiver_and_step() {
    let call = Call::new(Array1::zeros(100), Vec::new());
    let attack = ServerAttack::new(ServerAttackKind::Random);
    let reference = call.sent_to(&attack, 0);
    assert_ne!(call.sent_to(&attack, 1), reference);
    let mut later = call.clone();
    later.step += 1;
    assert_ne!(later.sent_to(&attack, 0), reference);
}

/// Equivocation: the two halves of the receivers get different models, on opposite sides of
/// the correct servers' mean, and (at strength ≤ 1) inside the honest coordinate-wise range.
#[test]
fn equivocation_sends_opposite_models_to_the_two_halves_of_the_receivers() {
    let honest = honest_models();
    let call = Call::new(honest[0].clone(), honest.clone());
    let attack = ServerAttack::new(ServerAttackKind::Equivocate);
    let sent: Vec<Array1<f32>> = (0..call.receivers)
        .map(|r| call.sent_to(&attack, r))
        .collect();
    let (low, high) = (&sent[0], &sent[3]);
    assert!(sent[..3].iter().all(|v| v == low), "first half differs");
    assert!(sent[3..].iter().all(|v| v == high), "second half differs");
    assert_ne!(low, high);

    let (mean, lo, hi) = honest_stats(&honest);
    let mut inner = 0.0;
    for j in 0..mean.len() {
        let (l, h) = (f64::from(low[j]), f64::from(high[j]));
        assert!(
            l <= mean[j] + 1e-6 && mean[j] <= h + 1e-6,
            "coordinate {j}: {l} ≤ {} ≤ {h} fails",
            mean[j]
        );
        assert!(
            lo[j] <= low[j] && high[j] <= hi[j],
            "coordinate {j} leaves the honest range"
        );
        inner += (l - mean[j]) * (h - mean[j]);
    }
    assert!(inner < 0.0, "the halves are not on opposite sides: {inner}");
}

#[test]
fn equivocation_strength_scales_the_push_towards_the_extremes() {
    let honest = honest_models();
    let call = Call::new(honest[0].clone(), honest.clone());
    let (mean, lo, hi) = honest_stats(&honest);
    let half_low = call.sent_to(&strength(0.5), 0);
    let half_high = call.sent_to(&strength(0.5), 5);
    for j in 0..mean.len() {
        let expected_low = mean[j] + 0.5 * (f64::from(lo[j]) - mean[j]);
        let expected_high = mean[j] + 0.5 * (f64::from(hi[j]) - mean[j]);
        assert!((f64::from(half_low[j]) - expected_low).abs() < 1e-5);
        assert!((f64::from(half_high[j]) - expected_high).abs() < 1e-5);
    }
    // Strength 0 is honest-looking: everybody gets the mean.
    assert_eq!(
        call.sent_to(&strength(0.0), 0),
        call.sent_to(&strength(0.0), 5)
    );
}

/// Knowing no correct model, the spread is unknown and every receiver gets the own model.
#[test]
fn equivocation_without_honest_models_sends_the_own_model() {
    let own = array![1.0, -1.0, 0.5];
    let call = Call::new(own.clone(), Vec::new());
    let attack = ServerAttack::new(ServerAttackKind::Equivocate);
    for r in 0..call.receivers {
        assert_eq!(call.sent_to(&attack, r), own);
    }
}

#[test]
fn silence_sends_nothing() {
    let call = Call::new(array![1.0, 2.0], honest_models());
    for r in 0..call.receivers {
        let mut to = call.clone();
        to.receiver = r;
        assert_eq!(to.run(&ServerAttack::new(ServerAttackKind::Silence)), None);
    }
}

fn stale(lag: u64) -> ServerAttack {
    ServerAttack {
        kind: ServerAttackKind::Stale,
        params: AttackParams {
            lag: Some(lag),
            ..AttackParams::default()
        },
    }
}

/// History is oldest first and its last entry is one step old, so lag ℓ is
/// `history[len − ℓ]`; a short history gives its oldest entry, an empty one the own model.
#[test]
fn stale_replays_the_model_from_lag_steps_ago() {
    let own = array![100.0];
    let mut call = Call::new(own.clone(), Vec::new());
    // history[i] holds the value i: entry 4 is one step old, entry 0 five steps old.
    call.history = (0..5).map(|i| array![i as f32]).collect();
    assert_eq!(call.sent_to(&stale(1), 0), array![4.0]);
    assert_eq!(call.sent_to(&stale(3), 0), array![2.0]);
    assert_eq!(call.sent_to(&stale(5), 0), array![0.0]);
    assert_eq!(call.sent_to(&stale(9), 0), array![0.0]);
    assert_eq!(call.sent_to(&stale(u64::MAX), 0), array![0.0]);
    assert_eq!(call.sent_to(&stale(0), 0), own);

    // Default lag 10 with 20 past models: the entry at index 20 − 10.
    call.history = (0..20).map(|i| array![i as f32]).collect();
    assert_eq!(
        call.sent_to(&ServerAttack::new(ServerAttackKind::Stale), 0),
        array![10.0]
    );

    call.history.clear();
    assert_eq!(call.sent_to(&stale(3), 0), own);
}

#[test]
fn only_stale_needs_history_and_only_as_much_as_its_lag() {
    assert_eq!(stale(7).history_needed(), 7);
    assert_eq!(
        ServerAttack::new(ServerAttackKind::Stale).history_needed(),
        10
    );
    for kind in ServerAttackKind::ALL {
        if kind != ServerAttackKind::Stale {
            assert_eq!(ServerAttack::new(kind).history_needed(), 0, "{kind}");
        }
    }
}

#[test]
fn reverse_and_partial_drop_act_on_the_own_model() {
    let own = Array1::from_shape_fn(10, |i| i as f32 + 1.0);
    let call = Call::new(own.clone(), honest_models());
    assert_eq!(
        call.sent_to(&ServerAttack::new(ServerAttackKind::Reverse), 0),
        &own * -100.0
    );
    let dropped = call.sent_to(&ServerAttack::new(ServerAttackKind::PartialDrop), 0);
    // round(0.3 × 10) = 3 coordinates are zeroed, the rest untouched.
    assert_eq!(dropped.iter().filter(|&&x| x == 0.0).count(), 3);
    assert!(dropped.iter().zip(&own).all(|(&s, &o)| s == 0.0 || s == o));
}

proptest! {
    /// Bad input never panics: any parameters, receivers, history and honest lengths; a sent
    /// model has the own model's length unless it is a replayed past one.
    #[test]
    fn server_attacks_never_panic(
        kind in proptest::sample::select(ServerAttackKind::ALL.to_vec()),
        scale in proptest::option::of(any::<f64>()),
        fraction in proptest::option::of(any::<f64>()),
        strength in proptest::option::of(any::<f64>()),
        lag in proptest::option::of(any::<u64>()),
        d in 0usize..12,
        honest_lengths in proptest::collection::vec(0usize..12, 0..5),
        history_len in 0usize..6,
        receiver in any::<usize>(),
        receivers in any::<usize>(),
        step in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let call = Call {
            own: Array1::from_shape_fn(d, |i| i as f32 - 2.0),
            honest: honest_lengths
                .iter()
                .map(|&len| Array1::from_shape_fn(len, |i| i as f32 * 0.25))
                .collect(),
            history: (0..history_len).map(|i| Array1::from_elem(d, i as f32)).collect(),
            step,
            receiver,
            receivers,
            seed,
        };
        let attack = ServerAttack {
            kind,
            params: AttackParams { scale, fraction, strength, lag, ..AttackParams::default() },
        };
        let sent = call.run(&attack);
        let silent_to_receiver = kind == ServerAttackKind::Silence
            || (kind == ServerAttackKind::SilenceHalf && receiver < receivers / 2);
        if silent_to_receiver {
            prop_assert!(sent.is_none());
        } else {
            prop_assert_eq!(sent.map(|v| v.len()), Some(d));
        }
        let _ = attack.validate();
    }
}

/// The Byzantine wrapper crafts once per receiver class and shares the model: that is only
/// sound if receivers of one class really get bit-identical models (and equivocation's two
/// classes really get different ones).
#[test]
fn receivers_of_one_class_get_the_same_model() {
    let mut call = Call::new(
        array![1.0, 2.0, 3.0],
        vec![
            array![0.0, 1.0, 2.0],
            array![2.0, 4.0, 3.5],
            array![1.0, 0.0, 9.0],
        ],
    );
    call.history = vec![array![5.0, 5.0, 5.0]];
    for kind in ServerAttackKind::ALL {
        let attack = ServerAttack::new(kind);
        for a in 0..call.receivers {
            for b in 0..call.receivers {
                let same_class = attack.receiver_class(a, call.receivers)
                    == attack.receiver_class(b, call.receivers);
                let (mut to_a, mut to_b) = (call.clone(), call.clone());
                to_a.receiver = a;
                to_b.receiver = b;
                let (sent_a, sent_b) = (to_a.run(&attack), to_b.run(&attack));
                let equal = sent_a.as_ref().map(bits) == sent_b.as_ref().map(bits);
                if same_class {
                    assert!(
                        equal,
                        "{kind}: receivers {a} and {b} share a class but differ"
                    );
                }
                // Random draws on three coordinates may coincide by chance; equivocation's two
                // halves never do here (the honest range is not a single point).
                if kind == ServerAttackKind::Equivocate && !same_class {
                    assert!(
                        !equal,
                        "equivocation: receivers {a} and {b} got the same model"
                    );
                }
            }
        }
    }
}

/// ALIE on models, by hand: correct models (0, 0) and (2, 4) have mean (1, 2) and population
/// deviation (1, 2), so z = 1.5 sends (1 − 1.5, 2 − 3) to every receiver.
#[test]
fn alie_on_models_sends_mean_minus_z_deviations_to_everyone() {
    let call = Call::new(array![9.0, 9.0], vec![array![0.0, 0.0], array![2.0, 4.0]]);
    let attack = ServerAttack {
        kind: ServerAttackKind::Alie,
        params: AttackParams {
            z: Some(1.5),
            ..AttackParams::default()
        },
    };
    for receiver in 0..call.receivers {
        assert_eq!(call.sent_to(&attack, receiver), array![-0.5, -1.0]);
    }
}

/// Selective silence: nothing to receivers 0..receivers/2, the honest model to the others.
#[test]
fn silence_half_is_silent_to_the_first_half_only() {
    let call = Call::new(array![1.0, 2.0], vec![array![0.0, 0.0]]);
    let attack = ServerAttack::new(ServerAttackKind::SilenceHalf);
    for receiver in 0..call.receivers {
        let mut to = call.clone();
        to.receiver = receiver;
        let sent = to.run(&attack);
        if receiver < call.receivers / 2 {
            assert_eq!(sent, None, "receiver {receiver}");
        } else {
            assert_eq!(sent, Some(array![1.0, 2.0]), "receiver {receiver}");
        }
    }
}

/// Dissensus, by hand: correct models (0, 0), (2, 2), (4, 4), mean (2, 2), min (0, 0), max
/// (4, 4). The receiver's model (4, 0) is above the mean in x and below it in y, so it gets
/// (max x, min y) = (4, 0) at strength 1 and halfway there, (3, 1), at strength 0.5. Without
/// the receiver's model (a worker, or none seen yet) it equivocates.
#[test]
fn dissensus_pushes_each_receiver_further_to_its_own_side() {
    let honest = [array![0.0_f32, 0.0], array![2.0, 2.0], array![4.0, 4.0]];
    let views: Vec<ArrayView1<'_, f32>> = honest.iter().map(|v| v.view()).collect();
    let own = array![2.0_f32, 2.0];
    let target = array![4.0_f32, 0.0];
    let view = |receiver_model| ServerView {
        own: own.view(),
        honest: &views,
        history: &[],
        step: 3,
        receiver: 1,
        receivers: 5,
        receiver_model,
        n: 5,
        f: 1,
        seed: 7,
    };
    let attack = ServerAttack::new(ServerAttackKind::Dissensus);
    assert_eq!(
        attack.craft(&view(Some(target.view()))),
        Some(array![4.0, 0.0])
    );
    assert_eq!(
        ServerAttack {
            kind: ServerAttackKind::Dissensus,
            ..strength(0.5)
        }
        .craft(&view(Some(target.view()))),
        Some(array![3.0, 1.0])
    );
    let equivocated = ServerAttack::new(ServerAttackKind::Equivocate).craft(&view(None));
    assert_eq!(attack.craft(&view(None)), equivocated);
}
