//! The node's admin HTTP server, on its own port (gRPC stays on the gRPC port):
//! `/metrics` (Prometheus text), `/healthz` (the process is alive), `/readyz` (the gRPC server
//! listens and peers are wired), `/status` (JSON: role, index, step, loss, accuracy, last
//! gather, peers, messages dropped, a server's newest checkpoint and exported model, and under
//! `chaos` what is armed and the first and last step it acted on) and
//! `/model?step=S` (a server's model snapshot at step S as little-endian f32
//! bytes, for tools that measure the true drift between correct servers), and `POST /chaos` /
//! `DELETE /chaos` (arm or cancel a run-time `attack`, `silence`, `delay`, `partition` or
//! `flood`; bearer token; only in jobs that allow chaos). [`chaos_order`] turns a request body
//! into an order or a refusal without touching the node, so any body can be tested.

use std::{
    collections::BTreeSet,
    sync::{Arc, atomic::Ordering},
};

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use byzsgd_api::{
    admin::{ChaosAccepted, ChaosRequest},
    chaos::{ChaosAction, FloodMessage, runtime_attack},
};
use byzsgd_core::{
    job::Role,
    protocol::{
        NodeId,
        chaos::{Armed, ChaosOrder},
    },
};
use serde::Deserialize;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    metrics,
    state::{ChaosControl, Shared},
};

/// Serves the admin endpoints until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let router = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/status", get(status))
        .route("/model", get(model))
        .route("/chaos", post(arm_chaos).delete(disarm_chaos))
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
    axum::Json(shared.status()).into_response()
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

/// A refusal as plain text; the message names the problem and the fix.
fn refuse(code: StatusCode, message: impl Into<String>) -> Response {
    (code, message.into()).into_response()
}

/// Checks the bearer token and that the job allows chaos; returns the refusal to send, if any.
fn refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &shared.chaos_token else {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "chaos is disabled on this node: no chaos token is configured \
             (start it with --chaos-token-file or BYZSGD_CHAOS_TOKEN)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !given.is_some_and(|given| same_secret(given.trim().as_bytes(), expected.as_bytes())) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token: send `Authorization: Bearer <chaos token>`",
            )
                .into_response(),
        );
    }
    if shared.chaos.is_none() {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "this job does not allow chaos: set `spec.chaos.allowed: true` in its manifest",
        ));
    }
    None
}

/// Compares two secrets in time independent of where they differ, so the token cannot be
/// guessed byte by byte from response times.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(!byte);
    }
    difference == 0
}

async fn arm_chaos(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = refusal(&shared, &headers) {
        return refusal;
    }
    let Some(control) = &shared.chaos else {
        return refuse(StatusCode::FORBIDDEN, "this job does not allow chaos");
    };
    let step = shared.status.lock().map_or(0, |status| status.step);
    let (order, accepted) = match chaos_order(&body, shared.role, control, step) {
        Ok(decided) => decided,
        Err(Refusal(code, message)) => return refuse(code, message),
    };
    control.handle.arm(order);
    tracing::info!(armed = %accepted.armed, from = accepted.from_step, until = ?accepted.until_step, "chaos armed");
    axum::Json(accepted).into_response()
}

/// The order a `POST /chaos` body arms on a node of `role` at `step`, with the answer to send,
/// or why it is refused (the status and a message naming the field and the fix). Pure: any
/// bytes give one or the other, which the fuzz target `admin_body` checks.
pub fn chaos_order(
    body: &[u8],
    role: Role,
    control: &ChaosControl,
    step: u64,
) -> Result<(ChaosOrder, ChaosAccepted), Refusal> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let request: ChaosRequest = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("field `{path}`: {}", error.into_inner()),
        )
    })?;
    let armed = armed_for(&request.action, role, control)?;
    let window = &request.window;
    if window.duration.is_some() {
        return Err(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "window.duration: the node takes step windows only; end a timed window with \
             DELETE /chaos",
        ));
    }
    if let Some(until) = window.until_step {
        if until <= window.from_step {
            return Err(Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "window.untilStep {until} is not after fromStep {}: set it higher",
                    window.from_step
                ),
            ));
        }
        if until <= step {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                format!("window.untilStep {until} is already past: the node is at step {step}"),
            ));
        }
    }
    let accepted = ChaosAccepted {
        armed: armed.name(),
        from_step: window.from_step,
        until_step: window.until_step,
        step,
    };
    let order = ChaosOrder {
        armed,
        from_step: window.from_step,
        until_step: window.until_step,
    };
    Ok((order, accepted))
}

/// Why a chaos request is refused: the HTTP status and the message naming the field and the
/// fix.
#[derive(Debug)]
pub struct Refusal(pub StatusCode, pub String);

impl Refusal {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self(code, message.into())
    }
}

/// The order a chaos request's action arms on this node, or why it is refused.
fn armed_for(action: &ChaosAction, role: Role, control: &ChaosControl) -> Result<Armed, Refusal> {
    Ok(match action {
        ChaosAction::Attack { name, params } => {
            match runtime_attack(role, name, *params, control.replicas, control.byzantine) {
                Ok(behaviour) => Armed::Attack(behaviour),
                Err(error) => {
                    return Err(Refusal::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("action: {error}"),
                    ));
                }
            }
        }
        ChaosAction::Silence => Armed::Silence,
        ChaosAction::Delay { latency, jitter } => {
            if latency.0.is_zero() && jitter.0.is_zero() {
                return Err(Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "action.latency: latency and jitter are both 0, the delay would do \
                     nothing: set latency, e.g. 50ms",
                ));
            }
            Armed::Delay {
                latency: latency.0,
                jitter: jitter.0,
            }
        }
        ChaosAction::Partition { peers } => match partition_peers(peers, control) {
            Ok(peers) => Armed::Partition { peers },
            Err(message) => return Err(Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, message)),
        },
        ChaosAction::Flood { target, message } => {
            match job_node(target, "action.target", control) {
                Ok(target) => Armed::Flood {
                    target,
                    malformed: *message == FloodMessage::Malformed,
                },
                Err(message) => {
                    return Err(Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, message));
                }
            }
        }
        ChaosAction::Crash => {
            return Err(Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "action `crash` is not switched inside the node: the runner or operator \
                 kills and restarts it; the node takes `attack`, `silence`, `delay`, \
                 `partition` and `flood`",
            ));
        }
    })
}

fn partition_peers(peers: &[String], control: &ChaosControl) -> Result<BTreeSet<NodeId>, String> {
    if peers.is_empty() {
        return Err(
            "action.peers is empty: the partition would cut nothing; list peers such as \
             server-1 or worker-3"
                .to_owned(),
        );
    }
    peers
        .iter()
        .enumerate()
        .map(|(position, name)| job_node(name, &format!("action.peers[{position}]"), control))
        .collect()
}

/// The node of this job called `name` (`server-I`, `worker-I`); the error names `field`.
fn job_node(name: &str, field: &str, control: &ChaosControl) -> Result<NodeId, String> {
    NodeId::parse(name)
        .filter(|node| {
            node.index
                < match node.role {
                    byzsgd_core::job::Role::Server => control.servers,
                    byzsgd_core::job::Role::Worker => control.workers,
                }
        })
        .ok_or_else(|| {
            format!(
                "{field}: `{name}` is not a node of this job: name a node as server-I \
                 (I < {}) or worker-I (I < {})",
                control.servers, control.workers
            )
        })
}

async fn disarm_chaos(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refusal(&shared, &headers) {
        return refusal;
    }
    if let Some(control) = &shared.chaos {
        control.handle.disarm();
        tracing::info!("chaos disarmed");
    }
    "disarmed".into_response()
}
