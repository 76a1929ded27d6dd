//! `byzsgd-node bench model` (filled in by its own work).

/// Flags of `byzsgd-node bench model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {}

/// Runs the benchmark.
pub fn run(_args: &ModelArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
