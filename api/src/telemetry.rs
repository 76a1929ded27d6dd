//! Logging of both binaries (feature `telemetry`, which `byzsgd-node` and `byzsgd-operator`
//! turn on): `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as plain text for
//! people or JSON lines for log collectors (`--log-format`; the operator starts node pods with
//! `json`). Stdout is left to command output (JSON results, progress lines, `crd`).

use tracing_subscriber::EnvFilter;

/// How log lines look (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
