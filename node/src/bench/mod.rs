//! Benchmarks printed by `byzsgd-node bench …`: one JSON object per line, so figures can be
//! compared across machines and runs without parsing prose. Speed targets live here, never in
//! timed tests.

pub mod flood;
pub mod gars;
pub mod jobs;
pub mod model;
