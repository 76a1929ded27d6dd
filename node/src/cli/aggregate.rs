//! `byzsgd-node aggregate` (filled in by the GAR work).

/// Flags of `byzsgd-node aggregate`.
#[derive(Debug, clap::Args)]
pub struct AggregateArgs {}

/// Runs `byzsgd-node aggregate`.
pub fn run(_args: &AggregateArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
