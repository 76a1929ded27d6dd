//! Helpers the node's integration tests share.

/// `byzsgd_rejected_total{reason}` of the node whose admin port is at `url` (0 when the series
/// does not exist yet).
pub(crate) async fn rejected(url: &str, reason: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("reason=\"{reason}\"");
    text.lines()
        .find(|line| line.starts_with("byzsgd_rejected_total{") && line.contains(&label))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}
