//! `byzsgd-node bench flood [FILE]`: issue 15's flood benchmark. Runs the job twice through the
//! local runner — undisturbed, then with its last Byzantine worker flooding `server-0` for
//! `--seconds` (the `flood` chaos action: model-sized, well-formed messages for steps far ahead,
//! or `--message malformed`) — and prints one JSON line per run with the correct nodes' peak
//! resident memory and the job's steps per second, then one line comparing them against the
//! targets (flooded server: < 64 MB more memory; steps/s within 2×).

use std::path::PathBuf;

use anyhow::Context;
use byzsgd_api::{Manifest, validate};

use crate::local::{self, LocalArgs, record::Summary};

/// Flags of `byzsgd-node bench flood`.
#[derive(Debug, Clone, clap::Args)]
pub struct FloodArgs {
    /// The job to run (it needs at least one Byzantine worker, which floods).
    #[arg(value_name = "FILE", default_value = "examples/quickstart.yaml")]
    pub file: PathBuf,
    /// How long the flood lasts.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Steps to train (both runs), so the job outlasts the flood.
    #[arg(long, default_value_t = 3000)]
    pub steps: u64,
    /// What the flooder sends: `max-size` or `malformed`.
    #[arg(long, default_value = "max-size")]
    pub message: String,
    /// Where run directories (and the generated job and chaos files) go.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs_dir: PathBuf,
}

const TARGET: &str = "server-0";
const MAX_RSS_INCREASE_MB: f64 = 64.0;
const MAX_SLOWDOWN: f64 = 2.0;

/// Runs both jobs and prints their figures.
pub fn run(args: &FloodArgs) -> anyhow::Result<()> {
    let manifest = Manifest::from_file(&args.file)?;
    let plan = validate(&manifest.spec)
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.file.display()))?;
    let flooder = (0..plan.workers)
        .rev()
        .find(|&index| !plan.worker_behaviours[index].is_honest())
        .or_else(|| (plan.byzantine_workers > 0).then(|| plan.workers - 1))
        .context("the job declares no Byzantine worker to flood with (workers.byzantine: 0)")?;
    let dir = args.runs_dir.join("bench-flood");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut job: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&args.file)?)?;
    job["spec"]["training"]["steps"] = args.steps.into();
    job["spec"]["chaos"]["allowed"] = true.into();
    if let Some(convergence) = job["spec"].get_mut("convergence") {
        convergence["withinSteps"] = args.steps.into();
    }
    let job_file = dir.join("job.yaml");
    std::fs::write(&job_file, serde_yaml_ng::to_string(&job)?)?;
    let chaos_file = dir.join("flood.yaml");
    std::fs::write(
        &chaos_file,
        format!(
            "apiVersion: byzsgd.io/v1alpha1\nkind: ByzantineChaos\nmetadata: {{name: bench-flood}}\n\
             spec:\n  job: {job}\n  role: worker\n  selector: {{mode: indices, indices: [{flooder}]}}\n  \
             action: {{kind: flood, target: {TARGET}, message: {message}}}\n  \
             window: {{duration: {seconds}s}}\n",
            job = manifest.name,
            message = args.message,
            seconds = args.seconds,
        ),
    )?;

    let local_args = LocalArgs::unattended(job_file, args.runs_dir.clone());
    let correct: Vec<String> = plan
        .correct_servers()
        .into_iter()
        .map(|index| format!("server-{index}"))
        .chain(
            (0..plan.workers)
                .filter(|&index| plan.worker_behaviours[index].is_honest() && index != flooder)
                .map(|index| format!("worker-{index}")),
        )
        .collect();
    let undisturbed = local::run(&local_args)?;
    print_run("undisturbed", &undisturbed, &correct);
    let flooded = local::run_with_chaos(&local_args, &[chaos_file])?;
    print_run("flooded", &flooded, &correct);

    let target_increase = mb(peak(&flooded, TARGET)) - mb(peak(&undisturbed, TARGET));
    let largest_increase = correct
        .iter()
        .map(|node| mb(peak(&flooded, node)) - mb(peak(&undisturbed, node)))
        .fold(f64::MIN, f64::max);
    let slowdown = undisturbed.steps_per_second / flooded.steps_per_second.max(f64::MIN_POSITIVE);
    let line = serde_json::json!({
        "bench": "flood_cost",
        "flooder": format!("worker-{flooder}"),
        "target": TARGET,
        "message": args.message,
        "flood_s": args.seconds,
        "target_rss_increase_mb": target_increase,
        "largest_correct_rss_increase_mb": largest_increase,
        "rss_increase_target_mb": MAX_RSS_INCREASE_MB,
        "slowdown": slowdown,
        "slowdown_target": MAX_SLOWDOWN,
        "within_targets": target_increase < MAX_RSS_INCREASE_MB && slowdown <= MAX_SLOWDOWN,
        "flood_evidence": flooded.node_chaos.get(&format!("worker-{flooder}")),
        // Messages the target dropped: how much of the flood reached it.
        "target_rejected": flooded.rejected.get(TARGET),
    });
    println!("{line}");
    Ok(())
}

fn peak(summary: &Summary, node: &str) -> u64 {
    summary.peak_rss_bytes.get(node).copied().unwrap_or(0)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn print_run(run: &str, summary: &Summary, correct: &[String]) {
    let peaks: serde_json::Map<String, serde_json::Value> = correct
        .iter()
        .map(|node| (node.clone(), mb(peak(summary, node)).into()))
        .collect();
    let line = serde_json::json!({
        "bench": "flood",
        "run": run,
        "steps": summary.steps,
        "steps_per_s": summary.steps_per_second,
        "wall_s": summary.wall_seconds,
        "final_accuracy": summary.final_accuracy,
        "peak_rss_mb": peaks,
        "run_dir": summary.run_dir,
    });
    println!("{line}");
}
