//! Any body of `POST /chaos` on a node's admin port (after the bearer token): it becomes an
//! order or a refusal naming the field, for a server and a worker, at any step.

#![no_main]

use byzsgd_core::{job::Role, protocol::chaos::ChaosHandle};
use byzsgd_node::{admin::chaos_order, state::ChaosControl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let control = ChaosControl {
        handle: ChaosHandle::new(),
        replicas: 7,
        byzantine: 2,
        servers: 5,
        workers: 7,
        seed: 1,
    };
    let step = data.first().map_or(0, |&b| u64::from(b));
    for role in [Role::Server, Role::Worker] {
        if let Ok((order, _)) = chaos_order(data, role, &control, step) {
            control.handle.arm(order);
        }
    }
});
