//! What the experiment tests share: the small job every test scenario starts from (the node's
//! seeded synthetic data set and logistic regression, so a run takes well under a second).

/// 5 servers (1 Byzantine), 7 workers (2 Byzantine), 40 steps, chaos allowed, target 0.3.
pub(crate) const JOB: &str = "apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {name: tiny}
spec:
  model: {kind: logistic}
  dataset: {name: synthetic}
  training: {steps: 40, batchSize: 16, learningRate: 0.05, seed: 7, evaluateEvery: 20}
  servers: {replicas: 5, byzantine: 1, gatherEvery: 5}
  workers: {replicas: 7, byzantine: 2}
  aggregation: {gradients: mda, models: median}
  chaos: {allowed: true}
  convergence: {targetAccuracy: 0.3}
";
