//! `byzsgd-node bench gars` (filled in by its own work).

/// Flags of `byzsgd-node bench gars`.
#[derive(Debug, clap::Args)]
pub struct GarsArgs {}

/// Runs the benchmark.
pub fn run(_args: &GarsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
