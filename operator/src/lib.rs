//! # byzsgd-operator
//!
//! The Kubernetes operator that turns `ByzSGDJob` resources into server and worker pods.
//! It starts thin: the CRD types, reconciler and status arrive with their own issue.
