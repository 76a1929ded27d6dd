//! Helpers the node's integration tests share.

/// The value of the first sample of `metric` in the `/metrics` of the node whose admin port is
/// at `url` whose labels contain `label` (e.g. `reason="stale"`), if exported.
pub(crate) async fn metric(url: &str, metric: &str, label: &str) -> Option<f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{metric}{{");
    text.lines()
        .find(|line| line.starts_with(&prefix) && line.contains(label))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// `byzsgd_rejected_total{reason}` of a node (0 when the series does not exist yet).
pub(crate) async fn rejected(url: &str, reason: &str) -> f64 {
    metric(
        url,
        "byzsgd_rejected_total",
        &format!("reason=\"{reason}\""),
    )
    .await
    .unwrap_or(0.0)
}

/// The `/status` of the node whose admin port is at `url`.
pub(crate) async fn status(url: &str) -> serde_json::Value {
    let text = reqwest::get(format!("{url}/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The step a node reports in its `/status`.
pub(crate) async fn step(url: &str) -> u64 {
    status(url).await["step"].as_u64().unwrap()
}
