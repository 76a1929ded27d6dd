//! Finite-difference checks of every model's hand-written backpropagation.
//!
//! The reference is an independent, loop-based f64 forward pass written from each model's
//! documented parameter layout; central differences in f64 (ε = 1e-6) are then accurate to
//! ~1e-9, so the comparison measures only the f32 model's own error. Checking every coordinate
//! also proves the documented layout (a swapped weight would show up as a wrong derivative).

// Test code: a failed unwrap is a failed test, and exact float equality is asserted on
// purpose where results must be bit-for-bit identical.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use byzsgd_core::{
    data::synthetic,
    model::{Model, ModelSpec},
};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Mean softmax cross-entropy of logits rows, in f64.
fn xent(logits: &[Vec<f64>], labels: &[u8]) -> f64 {
    let mut total = 0.0;
    for (row, &y) in logits.iter().zip(labels) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        total += sum.ln() + max - row[usize::from(y)];
    }
    total / labels.len() as f64
}

/// `out = input · W + b` with W row-major `fan_in × fan_out` at `offset`, bias after it.
fn dense(p: &[f64], offset: usize, input: &[f64], fan_out: usize) -> Vec<f64> {
    let fan_in = input.len();
    let bias = offset + fan_in * fan_out;
    (0..fan_out)
        .map(|o| {
            p[bias + o]
                + (0..fan_in)
                    .map(|i| input[i] * p[offset + i * fan_out + o])
                    .sum::<f64>()
        })
        .collect()
}

fn relu(v: Vec<f64>) -> Vec<f64> {
    v.into_iter().map(|x| x.max(0.0)).collect()
}

/// Reference loss of a dense network with layer widths `widths`.
fn dense_loss(p: &[f64], widths: &[usize], x: &Array2<f32>, labels: &[u8]) -> f64 {
    let logits: Vec<Vec<f64>> = x
        .rows()
        .into_iter()
        .map(|row| {
            let mut a: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let mut offset = 0;
            for l in 0..widths.len() - 1 {
                let z = dense(p, offset, &a, widths[l + 1]);
                offset += widths[l] * widths[l + 1] + widths[l + 1];
                a = if l + 2 < widths.len() { relu(z) } else { z };
            }
            a
        })
        .collect();
    xent(&logits, labels)
}

/// Valid 5×5 convolution of an HWC map (`h × w × cin`) with weights whose row is
/// `(ky·5 + kx)·cin + ci` and column the output channel, then ReLU.
fn conv_relu(
    p: &[f64],
    offset: usize,
    map: &[f64],
    (h, w, cin): (usize, usize, usize),
    cout: usize,
) -> Vec<f64> {
    let (oh, ow) = (h - 4, w - 4);
    let bias = offset + 25 * cin * cout;
    let mut out = vec![0.0; oh * ow * cout];
    for y in 0..oh {
        for x in 0..ow {
            for co in 0..cout {
                let mut s = p[bias + co];
                for ky in 0..5 {
                    for kx in 0..5 {
                        for ci in 0..cin {
                            let row = (ky * 5 + kx) * cin + ci;
                            s += map[((y + ky) * w + x + kx) * cin + ci]
                                * p[offset + row * cout + co];
                        }
                    }
                }
                out[(y * ow + x) * cout + co] = s.max(0.0);
            }
        }
    }
    out
}

/// 2×2 max-pool, stride 2, floor, of an HWC map; first maximum wins (scan order (0,0), (0,1),
/// (1,0), (1,1)), matching the model.
fn pool(map: &[f64], (h, w, c): (usize, usize, usize)) -> Vec<f64> {
    let (ph, pw) = (h / 2, w / 2);
    let mut out = vec![0.0; ph * pw * c];
    for y in 0..ph {
        for x in 0..pw {
            for ch in 0..c {
                let mut best = f64::NEG_INFINITY;
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    best = best.max(map[((2 * y + dy) * w + 2 * x + dx) * c + ch]);
                }
                out[(y * pw + x) * c + ch] = best;
            }
        }
    }
    out
}

/// Reference loss of the documented CNN on `rows × cols` images.
fn cnn_loss(
    p: &[f64],
    rows: usize,
    cols: usize,
    classes: usize,
    x: &Array2<f32>,
    labels: &[u8],
) -> f64 {
    let (h1, w1) = (rows - 4, cols - 4);
    let (ph1, pw1) = (h1 / 2, w1 / 2);
    let (h2, w2) = (ph1 - 4, pw1 - 4);
    let flat = (h2 / 2) * (w2 / 2) * 16;
    let o2 = 25 * 8 + 8;
    let o3 = o2 + 200 * 16 + 16;
    let o4 = o3 + flat * 64 + 64;
    assert_eq!(
        o4 + 64 * classes + classes,
        p.len(),
        "documented CNN layout"
    );
    let logits: Vec<Vec<f64>> = x
        .rows()
        .into_iter()
        .map(|row| {
            let img: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let a1 = conv_relu(p, 0, &img, (rows, cols, 1), 8);
            let p1 = pool(&a1, (h1, w1, 8));
            let a2 = conv_relu(p, o2, &p1, (ph1, pw1, 8), 16);
            let p2 = pool(&a2, (h2, w2, 16));
            let a3 = relu(dense(p, o3, &p2, 64));
            dense(p, o4, &a3, classes)
        })
        .collect();
    xent(&logits, labels)
}

/// Compares the model's gradient with central differences of `reference` at every coordinate,
/// or at `sample` random coordinates plus the last 200 (output layer and biases) if given.
fn check(
    model: &dyn Model,
    seed: u64,
    x: &Array2<f32>,
    labels: &[u8],
    sample: Option<usize>,
    reference: impl Fn(&[f64]) -> f64,
) {
    // Perturb the initialization so biases are non-zero and their gradients are exercised.
    let mut rng = StdRng::seed_from_u64(seed);
    let params: Array1<f32> = model.init(seed).mapv(|v| v + rng.random_range(-0.1..0.1));
    let mut grad = Array1::zeros(model.num_params());
    let loss = model.loss_and_gradient(params.view(), x.view(), labels, grad.view_mut());

    let mut p64: Vec<f64> = params.iter().map(|&v| f64::from(v)).collect();
    let ref_loss = reference(&p64);
    assert!(
        (f64::from(loss) - ref_loss).abs() < 1e-5 * (1.0 + ref_loss.abs()),
        "forward pass: model loss {loss} vs reference {ref_loss}"
    );

    let eps = 1e-6;
    let mut worst = (0.0_f64, 0_usize);
    let mut norm = 0.0_f64;
    let n = p64.len();
    let coords: Vec<usize> = match sample {
        None => (0..n).collect(),
        Some(k) => (0..k)
            .map(|_| rng.random_range(0..n))
            .chain(n.saturating_sub(200)..n)
            .collect(),
    };
    for i in coords {
        let original = p64[i];
        p64[i] = original + eps;
        let up = reference(&p64);
        p64[i] = original - eps;
        let down = reference(&p64);
        p64[i] = original;
        let fd = (up - down) / (2.0 * eps);
        norm += fd * fd;
        let err = (f64::from(grad[i]) - fd).abs() / (1e-3 + fd.abs());
        if err > worst.0 {
            worst = (err, i);
        }
    }
    assert!(
        norm.sqrt() > 1e-2,
        "degenerate check: reference gradient norm {}",
        norm.sqrt()
    );
    // f32 backprop against an f64 reference: ~1e-6 relative in practice; 1e-3 leaves margin
    // while a wrong term (factor, missing mask, misplaced weight) is off by O(1).
    assert!(
        worst.0 < 1e-3,
        "gradient coordinate {} differs: model {} (relative error {})",
        worst.1,
        grad[worst.1],
        worst.0
    );
}

fn batch(rows: usize, cols: usize, classes: usize, n: usize, seed: u64) -> (Array2<f32>, Vec<u8>) {
    let data = synthetic(n, rows, cols, classes, seed);
    (data.images, data.labels)
}

#[test]
fn logistic_gradient_matches_finite_differences() {
    let (rows, cols, classes) = (4, 5, 3);
    let model = ModelSpec::Logistic.build((rows, cols), classes).unwrap();
    let (x, labels) = batch(rows, cols, classes, 6, 1);
    check(model.as_ref(), 2, &x, &labels, None, |p| {
        dense_loss(p, &[20, classes], &x, &labels)
    });
}

#[test]
fn mlp_gradient_matches_finite_differences() {
    let (rows, cols, classes) = (6, 5, 4);
    let spec = ModelSpec::Mlp { hidden: vec![7, 5] };
    let model = spec.build((rows, cols), classes).unwrap();
    let (x, labels) = batch(rows, cols, classes, 5, 3);
    check(model.as_ref(), 4, &x, &labels, None, |p| {
        dense_loss(p, &[30, 7, 5, classes], &x, &labels)
    });
}

#[test]
fn paper_mlp_gradient_matches_finite_differences() {
    let model = ModelSpec::default().build((28, 28), 10).unwrap();
    let (x, labels) = batch(28, 28, 10, 3, 5);
    check(model.as_ref(), 6, &x, &labels, Some(400), |p| {
        dense_loss(p, &[784, 100, 10], &x, &labels)
    });
}

#[test]
fn cnn_gradient_matches_finite_differences() {
    let (rows, cols, classes) = (16, 16, 3);
    let model = ModelSpec::Cnn.build((rows, cols), classes).unwrap();
    let (x, labels) = batch(rows, cols, classes, 3, 7);
    check(model.as_ref(), 8, &x, &labels, None, |p| {
        cnn_loss(p, rows, cols, classes, &x, &labels)
    });
}

/// Odd, non-square sizes exercise the pooling's dropped last row/column and the row-vs-column
/// indexing that a square image would hide.
#[test]
fn cnn_gradient_matches_finite_differences_on_odd_rectangular_images() {
    let (rows, cols, classes) = (19, 17, 4);
    let model = ModelSpec::Cnn.build((rows, cols), classes).unwrap();
    let (x, labels) = batch(rows, cols, classes, 2, 9);
    check(model.as_ref(), 10, &x, &labels, None, |p| {
        cnn_loss(p, rows, cols, classes, &x, &labels)
    });
}
