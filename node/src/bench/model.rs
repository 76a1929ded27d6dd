//! `byzsgd-node bench model`: training throughput of each model on one thread.
//!
//! One case = one (model, batch size): a worker's inner loop — draw a mini-batch, compute loss
//! and gradient, apply an SGD step — timed for a fixed wall-clock duration after a warm-up. It
//! prints one JSON line per case:
//!
//! ```text
//! {"bench":"model","model":"mlp","params":79510,"batch":32,"samples_per_s":…,"threads":1,…}
//! ```
//!
//! `"samples_per_cpu_s"` divides by the thread's CPU time instead of wall-clock time (Linux
//! only, else `null`): on a machine shared with other work it still shows the code's speed.
//! `"data"` is `"idx:<dir>"` when the IDX files were found and `"synthetic"` otherwise (same
//! 28×28 shape and 10 classes, so the arithmetic is identical).
//!
//! The reference is PyTorch on the same machine with one thread (`torch.set_num_threads(1)`):
//! about 70 k samples/s at batch 32 and 157 k at batch 128 for the MLP 784-100-10.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use byzsgd_core::{
    data::{self, Batches, DEFAULT_DATA_DIR, Dataset},
    model::{ModelSpec, Sgd},
};

/// The models `bench model` can time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchModel {
    /// MLP 784-100-10 (the paper's model).
    Mlp,
    /// Multinomial logistic regression.
    Logistic,
    /// The small CNN.
    Cnn,
}

impl BenchModel {
    fn spec(self) -> ModelSpec {
        match self {
            Self::Mlp => ModelSpec::default(),
            Self::Logistic => ModelSpec::Logistic,
            Self::Cnn => ModelSpec::Cnn,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Logistic => "logistic",
            Self::Cnn => "cnn",
        }
    }
}

/// Flags of `byzsgd-node bench model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Models to time, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mlp,logistic,cnn",
        env = "BYZSGD_BENCH_MODELS"
    )]
    pub models: Vec<BenchModel>,
    /// Batch sizes to time, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "32,128",
        env = "BYZSGD_BENCH_BATCH"
    )]
    pub batch: Vec<usize>,
    /// Measured seconds per case (after a warm-up of a tenth of it, at least 0.2 s).
    #[arg(long, default_value_t = 3.0, env = "BYZSGD_BENCH_SECONDS")]
    pub seconds: f64,
    /// Directory of MNIST-format IDX files; synthetic data of the same shape is used if the
    /// files are not there (the JSON says which).
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "BYZSGD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Seed of the parameters and batch order.
    #[arg(long, default_value_t = 1, env = "BYZSGD_SEED")]
    pub seed: u64,
}

/// Runs the benchmark and prints one JSON line per (model, batch) case.
pub fn run(args: &ModelArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seconds.is_finite() && args.seconds > 0.0,
        "--seconds {} must be a positive number of seconds",
        args.seconds
    );
    if let Some(bad) = args.batch.iter().find(|&&b| b == 0) {
        anyhow::bail!("--batch {bad}: batch sizes must be at least 1");
    }
    let (train, source) = match data::load_dir(&args.data_dir) {
        Ok(split) => (split.train, format!("idx:{}", args.data_dir.display())),
        Err(error) => {
            eprintln!("note: {error}; timing on synthetic 28x28 data instead");
            (
                data::synthetic(10_000, 28, 28, 10, args.seed),
                "synthetic".to_owned(),
            )
        }
    };
    let train = Arc::new(train);
    for &model in &args.models {
        for &batch in &args.batch {
            let line = time_case(model, batch, &train, &source, args)?;
            println!("{line}");
        }
    }
    Ok(())
}

fn time_case(
    which: BenchModel,
    batch: usize,
    train: &Arc<Dataset>,
    source: &str,
    args: &ModelArgs,
) -> anyhow::Result<serde_json::Value> {
    let model = which
        .spec()
        .build(train.input_shape(), train.classes)
        .with_context(|| format!("building {}", which.name()))?;
    let mut params = model.init(args.seed);
    let mut grad = ndarray::Array1::zeros(model.num_params());
    let mut sgd = Sgd::new(0.01, 0.9, 0.0, model.num_params());
    let mut batches = Batches::new(
        Arc::clone(train),
        (0..train.len()).collect(),
        batch,
        args.seed,
    )?;
    let mut step = || {
        let (x, labels) = batches.next_batch();
        let loss = model.loss_and_gradient(params.view(), x, labels, grad.view_mut());
        sgd.step(params.view_mut(), grad.view());
        loss
    };
    let warmup = Duration::from_secs_f64((args.seconds / 10.0).max(0.2));
    let start = Instant::now();
    while start.elapsed() < warmup {
        step();
    }
    let measured = Duration::from_secs_f64(args.seconds);
    let cpu_start = thread_cpu_seconds();
    let start = Instant::now();
    let mut steps = 0_u64;
    let mut last_loss = f32::NAN;
    while start.elapsed() < measured {
        last_loss = step();
        steps += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds()
        .zip(cpu_start)
        .map(|(end, begin)| end - begin);
    let samples = steps as f64 * batch as f64;
    Ok(serde_json::json!({
        "bench": "model",
        "model": which.name(),
        "params": model.num_params(),
        "batch": batch,
        "samples_per_s": (samples / elapsed).round(),
        "samples_per_cpu_s": cpu.filter(|&c| c > 0.0).map(|c| (samples / c).round()),
        "steps_per_s": (steps as f64 / elapsed * 10.0).round() / 10.0,
        "threads": 1,
        "data": source,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "cpu_seconds": cpu.map(|c| (c * 1000.0).round() / 1000.0),
        "final_loss": last_loss,
        "gemm": "matrixmultiply",
    }))
}

/// CPU time this thread has run, from Linux's `/proc/thread-self/schedstat` (first field, in
/// nanoseconds); `None` elsewhere. On a shared machine, samples per CPU-second is the figure
/// that does not depend on what else is running; samples per wall-clock second is what a
/// dedicated machine would see.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(nanos as f64 / 1e9)
}
