//! A server whose quorum stays incomplete sends its current model again to the peers it has
//! not heard from (`protocol::server::RESEND_AFTER`): the liveness fix for a job whose every
//! pod was killed at once, where the restarted servers' first scatter reached no worker.
//! Drives the server state machine directly; no simulator, no I/O.

use std::sync::Arc;

use byzsgd_core::{
    gar::{GarConfig, Rule},
    job::spec::Mode,
    protocol::{
        Node, NodeId, Outputs, Payload, ProtocolConfig,
        server::{RESEND_AFTER, Server},
    },
};
use ndarray::Array1;

const DIMENSION: usize = 4;

fn server(mode: Mode) -> Server {
    let config = ProtocolConfig {
        servers: 5,
        workers: 7,
        server_quorum: 4,
        worker_quorum: 5,
        gather_every: 10,
        steps: 100,
        mode,
        gradient_rule: GarConfig::new(Rule::Mda, 2),
        model_rule: GarConfig::new(Rule::Median, 1),
        learning_rate: 0.1,
        momentum: 0.0,
        weight_decay: 0.0,
        evaluate_every: 0,
        dimension: DIMENSION,
        max_lead: 8,
        sync_timeout: 2.0,
        seed: 1,
    };
    Server::new(Arc::new(config), 0, Array1::zeros(DIMENSION), None)
}

/// (receiver, step) of every model message.
fn models(out: &Outputs) -> Vec<(NodeId, u64)> {
    out.messages
        .iter()
        .filter_map(|(to, payload)| match payload {
            Payload::Model { step, .. } => Some((*to, *step)),
            _ => None,
        })
        .collect()
}

fn gradient(step: u64) -> Payload {
    Payload::Gradient {
        step,
        gradient: Arc::new(Array1::zeros(DIMENSION)),
        loss: 0.5,
    }
}

#[test]
fn a_server_short_of_a_gradient_quorum_resends_its_model_to_the_silent_workers() {
    let mut server = server(Mode::Asynchronous);
    let first = server.start(0.0);
    assert_eq!(
        models(&first).len(),
        7,
        "the step-0 scatter reaches every worker"
    );
    for worker in [1, 3] {
        server
            .handle(0.5, NodeId::worker(worker), gradient(0))
            .unwrap();
    }
    let deadline = server
        .next_deadline()
        .expect("a wait has a re-send deadline");
    assert!((deadline - RESEND_AFTER).abs() < 1e-9, "{deadline}");
    assert!(
        models(&server.tick(deadline - 0.1)).is_empty(),
        "not before it"
    );
    let again = models(&server.tick(deadline));
    let expected: Vec<(NodeId, u64)> = [0, 2, 4, 5, 6]
        .into_iter()
        .map(|w| (NodeId::worker(w), 0))
        .collect();
    assert_eq!(
        again, expected,
        "only to the workers it has no gradient from"
    );
    let next = server.next_deadline().expect("and again later");
    assert!((next - (deadline + RESEND_AFTER)).abs() < 1e-9, "{next}");
}

#[test]
fn a_server_that_moved_on_has_no_stale_deadline_and_never_resends_in_an_undisturbed_step() {
    let mut server = server(Mode::Asynchronous);
    server.start(0.0);
    for worker in 0..5 {
        server
            .handle(0.01, NodeId::worker(worker), gradient(0))
            .unwrap();
    }
    assert_eq!(server.step(), 1, "a quorum of 5 gradients completes step 0");
    // The wait for step 1 starts at the next input; the step-0 deadline is gone.
    let deadline = server.next_deadline();
    assert!(
        deadline.is_none_or(|at| at > 0.01 + RESEND_AFTER - 1e-9),
        "{deadline:?}"
    );
}

#[test]
fn synchronous_servers_leave_scatter_to_the_workers_pulls() {
    let mut server = server(Mode::Synchronous);
    server.start(0.0);
    server.handle(0.5, NodeId::worker(1), gradient(0)).unwrap();
    let out = server.tick(10.0 * RESEND_AFTER);
    assert!(models(&out).is_empty(), "{out:?}");
}
