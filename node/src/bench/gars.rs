//! `byzsgd-node bench gars`: the time of every aggregation rule against the floor of reading
//! the same inputs once, one JSON line per case.
//!
//! Inputs are seeded Gaussian vectors, each its own allocation (as the runtime receives them):
//! an honest cluster, center c ~ N(0, I) plus N(0, 0.1² I) noise, and `f` outliers at
//! c + N(0, I), so Krum and MDA have real choices to make. The floor is the time to sum all
//! `n·d` floats once with a vectorized loop over the same rows; `floor_ratio` = rule time ÷ floor
//! time, both medians over `--repeats` runs after one warm-up run, on one thread; each rule run
//! is paired with a floor run just before it, so a shared machine's load hits both alike.
//!
//! Default cases (no `--n/--f/--d`): every rule at n = 19, f = 6, d = 10⁶ and MDA at n = 31,
//! f = 10, d = 10⁵. Cases below a rule's bound print a line with `"skipped"` and the bound.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use byzsgd_core::gar::{self, GarConfig, GarError, Rule};
use ndarray::{Array1, ArrayView1};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};
use serde_json::{Value, json};

/// Flags of `byzsgd-node bench gars`.
#[derive(Debug, clap::Args)]
pub struct GarsArgs {
    /// Numbers of inputs n (comma list). With none of --n/--f/--d, runs the default cases.
    #[arg(long, env = "BYZSGD_BENCH_GARS_N", value_delimiter = ',')]
    pub n: Vec<usize>,
    /// Declared numbers of Byzantine inputs f (comma list; default 6 when --n or --d is given).
    #[arg(long, env = "BYZSGD_BENCH_GARS_F", value_delimiter = ',')]
    pub f: Vec<usize>,
    /// Dimensions d (comma list; default 1000000 when --n or --f is given).
    #[arg(long, env = "BYZSGD_BENCH_GARS_D", value_delimiter = ',')]
    pub d: Vec<usize>,
    /// Rules to time (comma list of rule names, or `all`).
    #[arg(
        long,
        env = "BYZSGD_BENCH_GARS_RULES",
        value_delimiter = ',',
        default_value = "all"
    )]
    pub rules: Vec<String>,
    /// Timed runs per case (after one warm-up run); the median and minimum are reported.
    #[arg(long, env = "BYZSGD_BENCH_GARS_REPEATS", default_value_t = 5)]
    pub repeats: usize,
    /// Seed of the random inputs.
    #[arg(long, env = "BYZSGD_BENCH_GARS_SEED", default_value_t = 1)]
    pub seed: u64,
}

/// One benchmark case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Case {
    rule: Rule,
    n: usize,
    f: usize,
    d: usize,
}

/// Runs the benchmark, printing one JSON line per case on stdout.
pub fn run(args: &GarsArgs) -> anyhow::Result<()> {
    if args.repeats == 0 {
        bail!("--repeats 0 times nothing; give at least 1");
    }
    let rules = parse_rules(&args.rules)?;
    let cases = cases(args, &rules);
    // Consecutive cases sharing (n, f, d) share their inputs, generated once.
    for group in cases.chunk_by(|a, b| (a.n, a.f, a.d) == (b.n, b.f, b.d)) {
        let (n, f, d) = (group[0].n, group[0].f, group[0].d);
        let inputs = inputs(n, f, d, args.seed);
        let views: Vec<ArrayView1<'_, f32>> = inputs.iter().map(|row| row.view()).collect();
        for case in group {
            println!("{}", measure(*case, &views, args.repeats)?);
        }
    }
    Ok(())
}

/// Times one case, or reports it as skipped when `n` is below the rule's bound. Each timed run
/// of the rule is paired with a run of the floor right before it, so both see the same machine
/// load (the machine may be shared).
fn measure(case: Case, views: &[ArrayView1<'_, f32>], repeats: usize) -> anyhow::Result<Value> {
    let config = GarConfig::new(case.rule, case.f);
    if let Err(error @ GarError::TooFewInputs { .. }) = config.check(case.n) {
        return Ok(json!({
            "bench": "gars", "rule": case.rule.name(), "n": case.n, "f": case.f, "d": case.d,
            "skipped": error.to_string(),
        }));
    }
    // Warm-up: page in the inputs and the rule's buffers, and surface errors.
    black_box(sum_once(views));
    gar::aggregate(&config, views)
        .with_context(|| format!("{} failed at n = {}, f = {}", case.rule, case.n, case.f))?;
    let mut rule = Vec::with_capacity(repeats);
    let mut floor = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        floor.push(time(|| {
            black_box(sum_once(views));
        }));
        rule.push(time(|| {
            black_box(gar::aggregate(&config, views).ok());
        }));
    }
    let (rule_median, rule_min) = median_and_min(&mut rule);
    let (floor_median, floor_min) = median_and_min(&mut floor);
    let bytes = (case.n * case.d * size_of::<f32>()) as f64;
    Ok(json!({
        "bench": "gars",
        "rule": case.rule.name(),
        "n": case.n,
        "f": case.f,
        "d": case.d,
        "median_s": rule_median,
        "min_s": rule_min,
        "gb_per_s": bytes / rule_median / 1e9,
        "floor_median_s": floor_median,
        "floor_min_s": floor_min,
        "floor_ratio": rule_median / floor_median,
    }))
}

fn parse_rules(names: &[String]) -> anyhow::Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for name in names {
        if name == "all" {
            rules.extend(Rule::ALL);
        } else {
            rules.push(name.parse::<Rule>().context("invalid --rules")?);
        }
    }
    rules.dedup();
    Ok(rules)
}

/// The default cases, or the product of the given n, f, d and rules.
fn cases(args: &GarsArgs, rules: &[Rule]) -> Vec<Case> {
    if args.n.is_empty() && args.f.is_empty() && args.d.is_empty() {
        let mut cases: Vec<Case> = rules
            .iter()
            .map(|&rule| Case {
                rule,
                n: 19,
                f: 6,
                d: 1_000_000,
            })
            .collect();
        if rules.contains(&Rule::Mda) {
            cases.push(Case {
                rule: Rule::Mda,
                n: 31,
                f: 10,
                d: 100_000,
            });
        }
        return cases;
    }
    let or_default = |given: &[usize], default: usize| {
        if given.is_empty() {
            vec![default]
        } else {
            given.to_vec()
        }
    };
    let mut cases = Vec::new();
    for &n in &or_default(&args.n, 19) {
        for &f in &or_default(&args.f, 6) {
            for &d in &or_default(&args.d, 1_000_000) {
                cases.extend(rules.iter().map(|&rule| Case { rule, n, f, d }));
            }
        }
    }
    cases
}

/// Seeded inputs: `n − f` honest vectors around a common center and `f` outliers.
fn inputs(n: usize, f: usize, d: usize, seed: u64) -> Vec<Array1<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = move || -> f32 { StandardNormal.sample(&mut rng) };
    let center: Vec<f32> = (0..d).map(|_| normal()).collect();
    (0..n)
        .map(|index| {
            let spread = if index < n - f.min(n) { 0.1 } else { 1.0 };
            center.iter().map(|&c| c + spread * normal()).collect()
        })
        .collect()
}

/// The floor: every float read once, summed with independent lanes so the loop vectorizes.
fn sum_once(inputs: &[ArrayView1<'_, f32>]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0.0f32; LANES];
    let mut rest = 0.0f32;
    for row in inputs {
        let Some(row) = row.to_slice() else {
            rest += row.sum();
            continue;
        };
        let mut chunks = row.chunks_exact(LANES);
        for chunk in chunks.by_ref() {
            for k in 0..LANES {
                lanes[k] += chunk[k];
            }
        }
        rest += chunks.remainder().iter().sum::<f32>();
    }
    lanes.iter().sum::<f32>() + rest
}

/// Wall time of one run of `body`.
fn time(body: impl FnOnce()) -> Duration {
    let start = Instant::now();
    body();
    start.elapsed()
}

/// Median and minimum of `samples` (non-empty), in seconds.
fn median_and_min(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let middle = samples.len() / 2;
    let median = if samples.len() % 2 == 1 {
        samples[middle]
    } else {
        (samples[middle - 1] + samples[middle]) / 2
    };
    (median.as_secs_f64(), samples[0].as_secs_f64())
}
