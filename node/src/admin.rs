//! The node's admin HTTP server, on its own port (gRPC stays on the gRPC port):
//! `/metrics` (Prometheus text), `/healthz` (the process is alive), `/readyz` (the gRPC server
//! listens and peers are wired), `/status` (JSON: role, index, step, loss, accuracy, last
//! gather, peers) and `/model?step=S` (a server's model snapshot at step S as little-endian f32
//! bytes, for tools that measure the true drift between correct servers).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics;
use crate::runtime::Shared;

/// Serves the admin endpoints until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let router = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/status", get(status))
        .route("/model", get(model))
        .with_state(shared);
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "admin server failed");
    }
}

async fn metrics_handler(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&shared.registry),
    )
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::SeqCst) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match shared.status.lock() {
        Ok(status) => axum::Json(status.clone()).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable").into_response(),
    }
}

#[derive(Deserialize)]
struct ModelQuery {
    step: u64,
}

async fn model(State(shared): State<Arc<Shared>>, Query(query): Query<ModelQuery>) -> Response {
    let snapshot = shared
        .snapshots
        .lock()
        .ok()
        .and_then(|snapshots| snapshots.get(&query.step).cloned());
    match snapshot {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("no snapshot at step {}", query.step),
        )
            .into_response(),
    }
}
