//! The true drift between correct servers, `byzsgd_correct_servers_max_drift{namespace,
//! job_name}` (DESIGN.md §5): the largest pairwise distance between the models of the servers
//! the job does not make Byzantine, at one step all of them passed. No node can measure it (a
//! node does not know who is correct); the operator can, because it reads `spec.inject`, so it
//! does what `byzsgd-node local` does: fetch each correct server's model snapshot
//! (`/model?step=S` on the admin port, little-endian f32) at the latest snapshot step S every
//! correct server reached, and compare them. Servers snapshot every `evaluateEvery` steps and
//! keep the last few, so S is always available while they run.
//!
//! The arithmetic is pure and tested here; [`measure`] is the IO.

use std::time::Duration;

use byzsgd_core::job::Role;
use k8s_openapi::api::core::v1::Pod;

use super::{
    observe::{NodeReport, status_url},
    validate::ValidatedJob,
};

/// The latest snapshot step (a positive multiple of `every`) that every server in `correct`
/// reports having passed; `None` until each of them answered and passed the first one.
pub fn snapshot_step(
    correct: &[usize],
    reports: &[(usize, NodeReport)],
    every: u64,
) -> Option<u64> {
    let every = every.max(1);
    let slowest = correct
        .iter()
        .map(|index| {
            reports
                .iter()
                .find(|(i, _)| i == index)
                .map(|(_, report)| report.step)
        })
        .collect::<Option<Vec<u64>>>()?
        .into_iter()
        .min()?;
    let step = slowest / every * every;
    (step > 0).then_some(step)
}

/// A model snapshot's bytes as f32 values (little-endian); `None` for a length that is not a
/// multiple of 4.
pub fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// The largest Euclidean distance between two of `models`; `None` when fewer than two, or
/// when their dimensions differ (a snapshot of another job or a truncated one).
pub fn max_pairwise_distance(models: &[Vec<f32>]) -> Option<f64> {
    if models.len() < 2 || models.iter().any(|m| m.len() != models[0].len()) {
        return None;
    }
    let mut largest = 0.0_f64;
    for (i, a) in models.iter().enumerate() {
        for b in &models[i + 1..] {
            let squared: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| {
                    let d = f64::from(*x) - f64::from(*y);
                    d * d
                })
                .sum();
            largest = largest.max(squared.sqrt());
        }
    }
    Some(largest)
}

/// The servers `job` does not make Byzantine.
pub fn correct_servers(job: &ValidatedJob) -> Vec<usize> {
    (0..job.plan.servers)
        .filter(|&i| job.attack(Role::Server, i).is_none())
        .collect()
}

/// Measures the drift of `job` from its running `servers` and their `reports`: `None` when it
/// cannot be measured yet (a correct server not answering or not past the first snapshot),
/// or when a snapshot cannot be fetched.
pub async fn measure(
    http: &reqwest::Client,
    model_url_template: &str,
    job: &ValidatedJob,
    servers: &[(usize, &Pod)],
    reports: &[(usize, NodeReport)],
    timeout: Duration,
) -> Option<f64> {
    let correct = correct_servers(job);
    let step = snapshot_step(&correct, reports, job.plan.spec.training.evaluate_every)?;
    let mut tasks = tokio::task::JoinSet::new();
    for &index in &correct {
        let (_, pod) = servers.iter().find(|(i, _)| *i == index)?;
        let ip = pod.status.as_ref()?.pod_ip.clone()?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let url = status_url(
            model_url_template,
            &ip,
            &name,
            &job.namespace,
            &job.name,
            Role::Server,
            index,
        )
        .replace("{step}", &step.to_string());
        let http = http.clone();
        tasks.spawn(async move {
            let response = http.get(&url).timeout(timeout).send().await.ok()?;
            if !response.status().is_success() {
                tracing::debug!(%url, status = %response.status(), "no model snapshot");
                return None;
            }
            decode(&response.bytes().await.ok()?)
        });
    }
    let models = tasks
        .join_all()
        .await
        .into_iter()
        .collect::<Option<Vec<Vec<f32>>>>()?;
    max_pairwise_distance(&models)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(step: u64) -> NodeReport {
        NodeReport {
            step,
            ..NodeReport::default()
        }
    }

    #[test]
    fn the_snapshot_step_is_the_last_one_every_correct_server_passed() {
        let reports = vec![(0, at(1234)), (1, at(1190)), (2, at(1301)), (4, at(50))];
        // Server 4 is Byzantine (not in `correct`): its lag does not hold the others back.
        assert_eq!(snapshot_step(&[0, 1, 2], &reports, 100), Some(1100));
        // A correct server that did not answer: nothing to compare yet.
        assert_eq!(snapshot_step(&[0, 1, 3], &reports, 100), None);
        // Before the first snapshot.
        assert_eq!(snapshot_step(&[4], &reports, 100), None);
    }

    #[test]
    fn models_decode_from_little_endian_f32() {
        let bytes: Vec<u8> = [1.5_f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(decode(&bytes), Some(vec![1.5, -2.0]));
        assert_eq!(decode(&bytes[..5]), None);
    }

    #[test]
    fn the_drift_is_the_largest_pairwise_distance() {
        let models = vec![vec![0.0, 0.0], vec![3.0, 4.0], vec![0.0, 1.0]];
        assert_eq!(max_pairwise_distance(&models), Some(5.0));
        assert_eq!(max_pairwise_distance(&models[..1]), None);
        assert_eq!(
            max_pairwise_distance(&[vec![0.0], vec![1.0, 2.0]]),
            None,
            "different dimensions are not one job's models"
        );
    }
}
