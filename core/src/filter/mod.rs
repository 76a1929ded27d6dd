//! The synchronous variant's model filters (PAPER.md §5; LiuBei, arXiv 1911.07537): a worker
//! that pulls one server's model per step checks it before trusting it, and switches server
//! when a filter fails. Pure functions and small state, no I/O.

pub mod lipschitz;
pub mod outliers;

pub use lipschitz::LipschitzFilter;
pub use outliers::outliers_bound;
