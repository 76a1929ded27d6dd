//! Every attack moves the aggregate it targets: a worker attack the servers' average of
//! gradients, a server attack DMC's coordinate-wise median of models. The baseline is the same
//! aggregate with the attackers honest, so a test here fails the day an attack becomes a no-op
//! (a refactor that returns the own vector, a parameter that stops being read).

use byzsgd_core::{
    attack::{
        ServerAttack, ServerAttackKind, ServerView, WorkerAttack, WorkerAttackKind, WorkerView,
    },
    gar::{GarConfig, Rule, aggregate},
};
use ndarray::{Array1, ArrayView1};

const D: usize = 20;

/// `count` honest vectors of dimension D around a non-zero centre, each with its own
/// deterministic, uneven offsets (so means, spreads and medians differ per coordinate).
fn honest(count: usize, centre: f32) -> Vec<Array1<f32>> {
    (0..count)
        .map(|k| {
            Array1::from_shape_fn(D, |j| {
                let wobble = ((k * 7 + j * 3) % 11) as f32 / 10.0 - 0.5;
                centre + (j as f32 * 0.37).sin() + wobble * (1.0 + k as f32 * 0.1)
            })
        })
        .collect()
}

fn aggregate_with(rule: Rule, f: usize, inputs: &[Array1<f32>]) -> Array1<f32> {
    let views: Vec<ArrayView1<'_, f32>> = inputs.iter().map(|v| v.view()).collect();
    aggregate(&GarConfig::new(rule, f), &views)
        .expect("aggregable inputs")
        .value
}

/// Relative distance of `attacked` from `clean`; a non-finite aggregate counts as moved.
fn moved(attacked: &Array1<f32>, clean: &Array1<f32>) -> f64 {
    let diff: f64 = attacked
        .iter()
        .zip(clean)
        .map(|(a, c)| f64::from(a - c).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = clean
        .iter()
        .map(|c| f64::from(*c).powi(2))
        .sum::<f64>()
        .sqrt();
    if diff.is_finite() {
        diff / norm
    } else {
        f64::INFINITY
    }
}

/// n_w = 7, f_w = 2: the two Byzantine workers' vectors replace their honest gradients in the
/// servers' average.
#[test]
fn every_worker_attack_moves_the_average() {
    let (n, f) = (7, 2);
    let gradients = honest(n, 1.0);
    let (correct, own) = gradients.split_at(n - f);
    let clean = aggregate_with(Rule::Average, f, &gradients);
    let views: Vec<ArrayView1<'_, f32>> = correct.iter().map(|v| v.view()).collect();
    for kind in WorkerAttackKind::ALL {
        let attack = WorkerAttack::new(kind);
        if attack.flips_labels() {
            continue; // acts on the data, not on the vector: the simulator tests cover it
        }
        let mut inputs = correct.to_vec();
        for (i, own) in own.iter().enumerate() {
            let view = WorkerView {
                honest: &views,
                own: own.view(),
                step: 3,
                receiver: 0,
                n,
                f,
                seed: 11 + i as u64,
                rule: None,
            };
            inputs.push(attack.craft(&view).expect("worker attacks send"));
        }
        let attacked = aggregate_with(Rule::Average, f, &inputs);
        let by = moved(&attacked, &clean);
        assert!(by > 1e-3, "{kind} moved the average by only {by:e}");
    }
}

/// The attacks built to slip past distance-based rules also move MDA's aggregate: their
/// vectors are among the n − f it averages.
#[test]
fn in_distribution_worker_attacks_move_mda() {
    let (n, f) = (7, 2);
    let gradients = honest(n, 1.0);
    let (correct, own) = gradients.split_at(n - f);
    let clean = aggregate_with(Rule::Mda, f, &gradients);
    let views: Vec<ArrayView1<'_, f32>> = correct.iter().map(|v| v.view()).collect();
    for kind in [
        WorkerAttackKind::Alie,
        WorkerAttackKind::MinMax,
        WorkerAttackKind::MinSum,
        WorkerAttackKind::Mimic,
        WorkerAttackKind::OptimalIpm,
        WorkerAttackKind::OptimalAlie,
    ] {
        let attack = WorkerAttack::new(kind);
        let mda = GarConfig::new(Rule::Mda, f);
        let mut inputs = correct.to_vec();
        for own in own {
            let view = WorkerView {
                honest: &views,
                own: own.view(),
                step: 3,
                receiver: 0,
                n,
                f,
                seed: 5,
                rule: Some(&mda),
            };
            inputs.push(attack.craft(&view).expect("worker attacks send"));
        }
        let attacked = aggregate_with(Rule::Mda, f, &inputs);
        let by = moved(&attacked, &clean);
        assert!(by > 1e-3, "{kind} moved MDA by only {by:e}");
    }
}

/// n_ps = 5, f_ps = 1: the Byzantine server's model replaces its honest one in the
/// coordinate-wise median a correct server takes at a gather; the silent kinds send nothing
/// to that receiver instead.
#[test]
fn every_server_attack_moves_the_median_or_withholds_the_model() {
    let (n, f) = (5, 1);
    let models = honest(n, 0.2);
    let (correct, own) = models.split_at(n - f);
    let clean = aggregate_with(Rule::Median, f, &models);
    let views: Vec<ArrayView1<'_, f32>> = correct.iter().map(|v| v.view()).collect();
    // An older own model for `stale` to replay.
    let history = vec![own[0].mapv(|x| x - 3.0)];
    for kind in ServerAttackKind::ALL {
        let view = ServerView {
            own: own[0].view(),
            honest: &views,
            history: &history,
            step: 9,
            receiver: 0,
            receivers: n,
            // Receiver 0's own model, for dissensus.
            receiver_model: Some(views[0]),
            n,
            f,
            seed: 3,
        };
        let Some(sent) = ServerAttack::new(kind).craft(&view) else {
            assert!(
                matches!(
                    kind,
                    ServerAttackKind::Silence | ServerAttackKind::SilenceHalf
                ),
                "{kind} sent nothing to receiver 0"
            );
            continue;
        };
        let mut inputs = correct.to_vec();
        inputs.push(sent);
        let attacked = aggregate_with(Rule::Median, f, &inputs);
        let by = moved(&attacked, &clean);
        assert!(by > 1e-3, "{kind} moved the median by only {by:e}");
    }
}
