//! ByzSGD jobs as the tests watch them: the job's status and pods through the kube client, each
//! node's own `/status` over the pod network (polled in the background, so a test can later
//! ask what a server reported at the end, or when an attack was armed), `kubectl get`'s table
//! read by column, the check that a deleted job left nothing behind, and the same job file run
//! by `byzsgd-node local` as the undisturbed baseline a cluster run is compared with.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use byzsgd_api::{
    admin::Status,
    job::{ByzSgdJob, JobState},
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::{ResourceExt, api::ListParams};

use serde_json::{Value, json};

use crate::{
    cluster::{Cluster, image_binary, node_status, wait_until},
    timing::Stopwatch,
};

/// The label every object of a job carries.
pub const JOB_LABEL: &str = "byzsgd.io/job";

/// The job's state, if it has a status yet.
pub fn state(job: &ByzSgdJob) -> Option<JobState> {
    job.status.as_ref().and_then(|s| s.state)
}

/// A pod's phase (`Pending` when it has none yet).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod runs and is not being deleted.
pub fn running(pod: &Pod) -> bool {
    phase(pod) == "Running" && pod.metadata.deletion_timestamp.is_none()
}

/// Whether every container of the pod is ready.
pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's IP, once it has one.
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone())
}

/// The pods of `job` in `namespace`.
pub fn job_pods(cluster: &Cluster, namespace: &str, job: &str) -> Vec<Pod> {
    cluster.list(
        namespace,
        &ListParams::default().labels(&format!("{JOB_LABEL}={job}")),
    )
}

/// One line per pod: name, phase, readiness, restarts, IP; for failure messages.
pub fn describe_pods(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| {
            let restarts: i32 = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            format!(
                "  {} {} ready={} restarts={restarts} ip={}",
                p.name_any(),
                phase(p),
                ready(p),
                pod_ip(p).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `job` has `count` pods, all Running (and, with `and_ready`, Ready); returns them.
pub fn wait_pods_running(
    cluster: &Cluster,
    namespace: &str,
    job: &str,
    count: usize,
    and_ready: bool,
    timeout: Duration,
) -> Vec<Pod> {
    let what = format!(
        "{count} {} pods of {namespace}/{job}",
        if and_ready { "Ready" } else { "Running" }
    );
    wait_until(&what, timeout, Duration::from_millis(500), |last| {
        let pods = job_pods(cluster, namespace, job);
        *last = describe_pods(&pods);
        let ok = pods.len() == count && pods.iter().all(|p| running(p) && (!and_ready || ready(p)));
        ok.then_some(pods)
    })
}

/// Waits until the job's status satisfies `check`; returns the job then.
pub fn wait_job(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&ByzSgdJob) -> bool,
) -> ByzSgdJob {
    wait_until(what, timeout, Duration::from_millis(500), |last| {
        let job: Option<ByzSgdJob> = cluster.get(namespace, name);
        *last = format!("{:#?}", job.as_ref().map(|j| &j.status));
        job.filter(|j| check(j))
    })
}

/// Waits until no pod, Service, ConfigMap or Secret labelled with `job` is left in `namespace`
/// (garbage collection after `kubectl delete` of the job; the kubelet stops the pods).
pub fn wait_job_gone(cluster: &Cluster, namespace: &str, job: &str, timeout: Duration) {
    let selector = ListParams::default().labels(&format!("{JOB_LABEL}={job}"));
    wait_until(
        &format!("every object of {namespace}/{job} to be gone"),
        timeout,
        Duration::from_millis(500),
        |last| {
            let pods: Vec<Pod> = cluster.list(namespace, &selector);
            let services: Vec<Service> = cluster.list(namespace, &selector);
            let config_maps: Vec<ConfigMap> = cluster.list(namespace, &selector);
            let secrets: Vec<Secret> = cluster.list(namespace, &selector);
            let names = |kind: &str, names: Vec<String>| {
                names
                    .into_iter()
                    .map(|n| format!("{kind}/{n}"))
                    .collect::<Vec<_>>()
            };
            let left: Vec<String> = [
                names("pod", pods.iter().map(ResourceExt::name_any).collect()),
                names(
                    "service",
                    services.iter().map(ResourceExt::name_any).collect(),
                ),
                names(
                    "configmap",
                    config_maps.iter().map(ResourceExt::name_any).collect(),
                ),
                names(
                    "secret",
                    secrets.iter().map(ResourceExt::name_any).collect(),
                ),
            ]
            .concat();
            *last = left.join(", ");
            left.is_empty().then_some(())
        },
    );
}

/// `byzsgd-node local FILE` (the release binary the node image carries) in a temp directory,
/// timed as `test`'s phase `phase`; returns its `runs/<run>/summary.json`. The same file on the
/// cluster is compared with it (`finalAccuracy`).
pub fn local_run(test: &'static str, phase: &str, file: &Path) -> Value {
    let watch = Stopwatch::start(test, phase);
    let dir = tempfile::tempdir().expect("a temp dir");
    let binary = image_binary("byzsgd-node");
    eprintln!("$ byzsgd-node local {}", file.display());
    let output = Command::new(&binary)
        .arg("local")
        .arg(file)
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let shown = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the local run failed\n{shown}");
    let summary_path = std::fs::read_dir(dir.path().join("runs"))
        .expect("runs/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path().join("summary.json"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no runs/*/summary.json\n{shown}"));
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(&summary_path).expect("summary.json readable"),
    )
    .expect("summary.json is JSON");
    watch.done_with(&json!({
        "final_accuracy": summary["finalAccuracy"],
        "steps": summary["steps"],
        "wall_seconds": summary["wallSeconds"],
    }));
    summary
}

/// Every node's `/status` as seen so far, by pod name: each distinct report, in order.
pub type History = BTreeMap<String, Vec<Status>>;

/// Polls the `/status` of a set of pods (name → IP) in the background, once every `every`,
/// recording each report that differs from the pod's previous one. Stops on drop.
pub struct StatusWatch {
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatusWatch {
    /// Starts polling `pods` (name → pod IP).
    pub fn start(pods: BTreeMap<String, String>, every: Duration) -> Self {
        let history: Arc<Mutex<History>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (history, stop) = (history.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for (name, ip) in &pods {
                        let Some(status) = node_status(ip) else {
                            continue;
                        };
                        let Ok(mut history) = history.lock() else {
                            return;
                        };
                        let seen = history.entry(name.clone()).or_default();
                        if seen.last() != Some(&status) {
                            seen.push(status);
                        }
                    }
                    std::thread::sleep(every);
                }
            })
        };
        Self {
            history,
            stop,
            thread: Some(thread),
        }
    }

    /// A copy of everything seen so far.
    pub fn history(&self) -> History {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The latest report of `pod`.
    pub fn latest(&self, pod: &str) -> Option<Status> {
        self.history
            .lock()
            .ok()
            .and_then(|h| h.get(pod).and_then(|s| s.last().cloned()))
    }
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The pods' names and IPs, for a [`StatusWatch`].
pub fn addresses(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .filter_map(|p| Some((p.name_any(), pod_ip(p)?)))
        .collect()
}

/// Reads a `kubectl get` table: one map per row, from the upper-case header to the cell,
/// cut at the header's column offsets (kubectl aligns cells under their header), so empty
/// cells stay empty instead of shifting the row.
pub fn table(output: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = output.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    // Column starts: a header word that follows two or more spaces (or the line start).
    let mut starts = vec![0];
    let bytes = header.as_bytes();
    for i in 2..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    let cell = |line: &str, k: usize| -> String {
        let from = starts[k].min(line.len());
        let to = starts
            .get(k + 1)
            .copied()
            .unwrap_or(line.len())
            .min(line.len());
        line.get(from..to).unwrap_or_default().trim().to_owned()
    };
    let names: Vec<String> = (0..starts.len()).map(|k| cell(header, k)).collect();
    lines
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(k, name)| (name.clone(), cell(line, k)))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_tables_are_read_by_column_with_empty_cells() {
        let output = "\
NAME         STATE     STEP   ACCURACY   DRIFT    SERVERS (F/N)   WORKERS (F/N)   AGE
quickstart   Running   400    0.71       0.0123   1/5             2/7             3m
other        Created                              1/5             2/7             1s
";
        let rows = table(output);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["STEP"], "400");
        assert_eq!(rows[0]["ACCURACY"], "0.71");
        assert_eq!(rows[0]["SERVERS (F/N)"], "1/5");
        assert_eq!(rows[1]["STATE"], "Created");
        assert_eq!(rows[1]["STEP"], "");
        assert_eq!(rows[1]["WORKERS (F/N)"], "2/7");
        assert_eq!(rows[1]["AGE"], "1s");
    }
}
