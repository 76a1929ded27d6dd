//! Contracts of the model API other parts rely on: parameter counts, validation at build time,
//! the manifest syntax, determinism, SGD's update rule, and evaluation.

// Test code: a failed unwrap is a failed test, and exact float equality is asserted on
// purpose where results must be bit-for-bit identical.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use std::sync::Arc;

use byzsgd_core::{
    data::{Batches, synthetic},
    model::{Model, ModelError, ModelSpec, Sgd},
};
use ndarray::{Array1, array};

fn build(spec: &ModelSpec) -> Box<dyn Model> {
    spec.build((28, 28), 10).unwrap()
}

/// The paper's network has 784·100 + 100 + 100·10 + 10 parameters; servers size buffers and
/// the wire format from this number.
#[test]
fn parameter_counts_match_the_documented_layouts() {
    assert_eq!(build(&ModelSpec::default()).num_params(), 79_510);
    assert_eq!(build(&ModelSpec::Logistic).num_params(), 784 * 10 + 10);
    assert_eq!(
        build(&ModelSpec::Cnn).num_params(),
        208 + 3_216 + 16_448 + 650
    );
    let deep = ModelSpec::Mlp {
        hidden: vec![64, 32],
    }
    .build((8, 8), 3)
    .unwrap();
    assert_eq!(deep.num_params(), 64 * 64 + 64 + 64 * 32 + 32 + 32 * 3 + 3);
    assert_eq!((deep.input_len(), deep.classes()), (64, 3));
}

#[test]
fn build_rejects_unusable_shapes_with_errors_naming_the_fix() {
    let cases = [
        (ModelSpec::Logistic.build((0, 28), 10), "no pixels"),
        (ModelSpec::default().build((28, 28), 1), "at least 2"),
        (
            ModelSpec::Mlp {
                hidden: vec![100, 0],
            }
            .build((28, 28), 10),
            "width 0",
        ),
        (ModelSpec::Cnn.build((15, 28), 10), "too small for the cnn"),
    ];
    for (result, needle) in cases {
        let error = result.unwrap_err();
        assert!(error.to_string().contains(needle), "{error}");
    }
    assert_eq!(
        ModelSpec::Cnn.build((16, 16), 2).err(),
        None,
        "16x16 is the documented minimum"
    );
    assert!(matches!(
        ModelSpec::Mlp {
            hidden: vec![usize::MAX]
        }
        .build((28, 28), 10),
        Err(ModelError::TooLarge { .. })
    ));
}

/// Manifests write `{kind: mlp, hidden: [100]}`; the MLP's width defaults to the paper's.
#[test]
fn model_spec_reads_the_manifest_syntax() {
    let parse = |s: &str| serde_json::from_str::<ModelSpec>(s);
    assert_eq!(
        parse(r#"{"kind":"logistic"}"#).unwrap(),
        ModelSpec::Logistic
    );
    assert_eq!(parse(r#"{"kind":"cnn"}"#).unwrap(), ModelSpec::Cnn);
    assert_eq!(
        parse(r#"{"kind":"mlp"}"#).unwrap(),
        ModelSpec::Mlp { hidden: vec![100] }
    );
    assert_eq!(
        parse(r#"{"kind":"mlp","hidden":[200,50]}"#).unwrap(),
        ModelSpec::Mlp {
            hidden: vec![200, 50]
        }
    );
    assert!(parse(r#"{"kind":"resnet"}"#).is_err());
    assert!(
        parse(r#"{"kind":"mlp","hiden":[10]}"#).is_err(),
        "typos must not pass silently"
    );
    let round_trip = serde_json::to_string(&ModelSpec::default()).unwrap();
    assert_eq!(round_trip, r#"{"kind":"mlp","hidden":[100]}"#);
    assert_eq!(ModelSpec::default().to_string(), "mlp-100");
}

#[test]
fn init_is_deterministic_per_seed_and_differs_across_seeds() {
    for spec in [ModelSpec::Logistic, ModelSpec::default(), ModelSpec::Cnn] {
        let model = build(&spec);
        let a = model.init(7);
        assert_eq!(a, model.init(7), "{spec}");
        assert_ne!(a, model.init(8), "{spec}");
        assert!(a.iter().all(|v| v.is_finite()));
        // He/Glorot scaling: weights of order 1/sqrt(fan_in), not 0 and not 1.
        let rms = (a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32).sqrt();
        assert!(rms > 0.01 && rms < 0.5, "{spec}: rms {rms}");
    }
}

/// Same seed → identical parameters after k SGD steps with momentum and weight decay, for
/// every model; ByzSGD's simulation and experiments rely on bit-for-bit replay.
#[test]
fn training_is_bit_for_bit_reproducible_for_a_seed() {
    let data = Arc::new(synthetic(300, 28, 28, 10, 11));
    let run = |spec: &ModelSpec, seed: u64| {
        let model = build(spec);
        let mut params = model.init(seed);
        let mut grad = Array1::zeros(model.num_params());
        let mut sgd = Sgd::new(0.05, 0.9, 1e-4, model.num_params());
        let mut batches = Batches::new(Arc::clone(&data), (0..300).collect(), 16, seed).unwrap();
        for _ in 0..25 {
            let (x, labels) = batches.next_batch();
            model.loss_and_gradient(params.view(), x, labels, grad.view_mut());
            sgd.step(params.view_mut(), grad.view());
        }
        params
    };
    for spec in [ModelSpec::Logistic, ModelSpec::default(), ModelSpec::Cnn] {
        let first = run(&spec, 3);
        assert_eq!(first, run(&spec, 3), "{spec}");
        assert_ne!(first, run(&spec, 4), "{spec}");
        assert_ne!(
            first,
            build(&spec).init(3),
            "{spec}: training did not move the parameters"
        );
    }
}

/// PyTorch `torch.optim.SGD` semantics, worked by hand: θ = 1, g = 0.5, wd = 0.1, μ = 0.9,
/// η = 0.1. Step 1: g' = 0.6, v = 0.6, θ = 0.94. Step 2: g' = 0.594, v = 1.134, θ = 0.8266.
#[test]
fn sgd_follows_pytorch_momentum_and_weight_decay_semantics() {
    let mut sgd = Sgd::new(0.1, 0.9, 0.1, 2);
    let mut params = array![1.0_f32, -2.0];
    let grad = array![0.5_f32, 0.0];
    sgd.step(params.view_mut(), grad.view());
    assert!((params[0] - 0.94).abs() < 1e-6, "{params}");
    assert!(
        (params[1] - -1.98).abs() < 1e-6,
        "weight decay alone shrinks θ: {params}"
    );
    sgd.step(params.view_mut(), grad.view());
    assert!((params[0] - 0.8266).abs() < 1e-6, "{params}");
    assert!((sgd.velocity()[0] - 1.134).abs() < 1e-6);
    sgd.reset();
    assert_eq!(sgd.velocity(), array![0.0_f32, 0.0]);

    let mut plain = Sgd::new(0.5, 0.0, 0.0, 1);
    let mut theta = array![2.0_f32];
    plain.step(theta.view_mut(), array![1.0_f32].view());
    plain.step(theta.view_mut(), array![1.0_f32].view());
    assert_eq!(theta[0], 1.0, "plain SGD: θ − η·g per step, no memory");
}

/// `evaluate` must agree with the training loss on the same data, count accuracy correctly,
/// and be independent of its internal chunking (sizes straddling the chunk boundary).
#[test]
fn evaluate_agrees_with_the_training_loss_and_counts_accuracy() {
    for spec in [ModelSpec::Logistic, ModelSpec::default(), ModelSpec::Cnn] {
        let model = build(&spec);
        let data = synthetic(300, 28, 28, 10, 5);
        let params = model.init(2);
        let mut grad = Array1::zeros(model.num_params());
        let train_loss = model.loss_and_gradient(
            params.view(),
            data.images.view(),
            &data.labels,
            grad.view_mut(),
        );
        let (loss, accuracy) = model.evaluate(params.view(), data.images.view(), &data.labels);
        assert!(
            (loss - train_loss).abs() < 1e-4 * train_loss,
            "{spec}: {loss} vs {train_loss}"
        );
        assert!((0.0..=1.0).contains(&accuracy));

        // Accuracy of a single sample is 0 or 1, and the mean over samples is the total.
        let per_sample: f32 = (0..300)
            .map(|i| {
                let x = data
                    .images
                    .slice_axis(ndarray::Axis(0), ndarray::Slice::from(i..=i));
                model.evaluate(params.view(), x, &data.labels[i..=i]).1
            })
            .sum();
        assert!((per_sample / 300.0 - accuracy).abs() < 1e-6, "{spec}");
    }
}

/// A model fitted on separable synthetic data must get most of it right: evaluate's accuracy
/// is not stuck at chance.
#[test]
fn every_model_learns_synthetic_data() {
    let data = Arc::new(synthetic(600, 28, 28, 4, 21));
    for spec in [ModelSpec::Logistic, ModelSpec::default(), ModelSpec::Cnn] {
        let model = spec.build((28, 28), 4).unwrap();
        let mut params = model.init(1);
        let mut grad = Array1::zeros(model.num_params());
        let mut sgd = Sgd::new(0.05, 0.9, 0.0, model.num_params());
        let mut batches = Batches::new(Arc::clone(&data), (0..600).collect(), 32, 1).unwrap();
        let (_, before) = model.evaluate(params.view(), data.images.view(), &data.labels);
        for _ in 0..100 {
            let (x, labels) = batches.next_batch();
            model.loss_and_gradient(params.view(), x, labels, grad.view_mut());
            sgd.step(params.view_mut(), grad.view());
        }
        let (_, after) = model.evaluate(params.view(), data.images.view(), &data.labels);
        assert!(
            after > 0.95 && after > before,
            "{spec}: accuracy {before} -> {after}"
        );
    }
}

#[test]
fn evaluate_on_an_empty_set_is_nan_not_a_panic() {
    let model = build(&ModelSpec::default());
    let empty = ndarray::Array2::<f32>::zeros((0, 784));
    let (loss, accuracy) = model.evaluate(model.init(0).view(), empty.view(), &[]);
    assert!(loss.is_nan() && accuracy.is_nan());
}

/// Models are shared between threads (`Send + Sync`); concurrent calls each get their own
/// scratch space and must give the same answer as sequential ones.
#[test]
fn concurrent_gradients_equal_sequential_ones() {
    let model: Arc<dyn Model> = Arc::from(build(&ModelSpec::default()));
    let data = synthetic(64, 28, 28, 10, 9);
    let params = model.init(1);
    let sequential: Vec<Array1<f32>> = (0..4)
        .map(|i| {
            let mut g = Array1::zeros(model.num_params());
            let rows = ndarray::Slice::from(i * 16..(i + 1) * 16);
            let x = data.images.slice_axis(ndarray::Axis(0), rows);
            model.loss_and_gradient(
                params.view(),
                x,
                &data.labels[i * 16..(i + 1) * 16],
                g.view_mut(),
            );
            g
        })
        .collect();
    let concurrent: Vec<Array1<f32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (model, params, data) = (&model, &params, &data);
                scope.spawn(move || {
                    let mut g = Array1::zeros(model.num_params());
                    for _ in 0..50 {
                        let rows = ndarray::Slice::from(i * 16..(i + 1) * 16);
                        let x = data.images.slice_axis(ndarray::Axis(0), rows);
                        let labels = &data.labels[i * 16..(i + 1) * 16];
                        model.loss_and_gradient(params.view(), x, labels, g.view_mut());
                    }
                    g
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sequential, concurrent);
}

/// Parameters and gradients may be strided views (e.g. a row of a matrix of candidates).
#[test]
fn strided_parameter_and_gradient_views_give_the_same_result() {
    let model = build(&ModelSpec::Logistic);
    let data = synthetic(8, 28, 28, 10, 4);
    let params = model.init(3);
    let mut contiguous = Array1::zeros(model.num_params());
    let loss = model.loss_and_gradient(
        params.view(),
        data.images.view(),
        &data.labels,
        contiguous.view_mut(),
    );

    // Column 1 of an n×2 matrix is a stride-2 view.
    let mut holder = ndarray::Array2::<f32>::zeros((model.num_params(), 2));
    holder.column_mut(1).assign(&params);
    let mut grads = ndarray::Array2::<f32>::zeros((model.num_params(), 2));
    let strided_loss = model.loss_and_gradient(
        holder.column(1),
        data.images.view(),
        &data.labels,
        grads.column_mut(1),
    );
    assert_eq!(loss, strided_loss);
    assert_eq!(grads.column(1), contiguous);
}
