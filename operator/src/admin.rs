//! The operator's HTTP endpoints on `--metrics-listen`: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (connected to the API server, with the CRD
//! installed; a standby replica waiting for the lease is ready too, so a rollout can proceed).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus::Registry;
use tokio::net::TcpListener;

/// What the endpoints read.
#[derive(Debug)]
pub struct AdminState {
    /// The operator's metrics.
    pub registry: Registry,
    /// Set once the operator found its CRD.
    pub ready: AtomicBool,
}

/// Serves the endpoints until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&state.registry),
    )
}

async fn ready(State(state): State<Arc<AdminState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}
