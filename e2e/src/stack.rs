//! What a cluster needs before a job: the images in containerd, the Prometheus Operator's CRDs
//! (for the chart's monitoring objects), the chart installed with `helm` and its operator
//! Deployment Available; and a real Prometheus configured from the chart's PodMonitor and
//! ServiceMonitor as they are in the cluster.

use std::{path::Path, time::Duration};

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;

use crate::{
    cluster::{Cluster, image_archives, quiet, run, run_output, wait_until},
    monitors::{self, ApiAccess},
    prometheus::Prometheus,
};

/// The Prometheus Operator CRDs the chart's optional objects need.
const MONITORING_CRDS: [&str; 3] = ["servicemonitors", "podmonitors", "prometheusrules"];

/// `testbed/import-images` of the three archives `scripts/images` built.
pub fn import_images() {
    let archives: Vec<String> = image_archives()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut words = vec!["testbed/import-images"];
    words.extend(archives.iter().map(String::as_str));
    run(&words);
}

/// Installs the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs
/// (fetched by `charts/prometheus-operator-crds` through the Go module proxy) and waits until
/// they are served, with the README's two commands.
pub fn install_monitoring_crds() {
    let dir = quiet(&["charts/prometheus-operator-crds"]);
    let dir = Path::new(dir.trim());
    let files: Vec<String> = MONITORING_CRDS
        .iter()
        .map(|plural| {
            dir.join(format!("monitoring.coreos.com_{plural}.yaml"))
                .display()
                .to_string()
        })
        .collect();
    let mut words = vec!["kubectl", "apply", "--server-side"];
    for file in &files {
        words.extend(["-f", file.as_str()]);
    }
    run(&words);
    run(&[
        "kubectl",
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
    ]);
}

/// A Helm release; `helm uninstall`ed on drop (also when the test panics), so the next test
/// binary finds no operator reconciling its namespaces.
pub struct Release {
    /// Release name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl Release {
    /// Takes charge of a release that `helm install` made.
    pub fn installed(name: &str, namespace: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// The operator Deployment's name: the chart's full name, `<release>-byzsgd-operator`.
    pub fn deployment(&self) -> String {
        if self.name.contains("byzsgd-operator") {
            self.name.clone()
        } else {
            format!("{}-byzsgd-operator", self.name)
        }
    }

    /// Waits until the operator Deployment is Available with every replica ready.
    pub fn wait_available(&self, cluster: &Cluster, timeout: Duration) -> Deployment {
        let name = self.deployment();
        wait_until(
            &format!("Deployment {}/{name} Available", self.namespace),
            timeout,
            Duration::from_millis(250),
            |last| {
                let deployment: Option<Deployment> = cluster.get(&self.namespace, &name);
                *last = format!("{:#?}", deployment.as_ref().map(|d| &d.status));
                let status = deployment.as_ref()?.status.as_ref()?;
                let available = status
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True");
                let replicas = deployment.as_ref()?.spec.as_ref()?.replicas.unwrap_or(1);
                (available && status.ready_replicas == Some(replicas)).then(|| deployment.clone())
            },
        )
        .expect("the Deployment exists")
    }

    /// `helm install` of the chart as a release in `namespace` that watches only `namespace`
    /// (the operator's `--watch-namespace`) and polls servers every `poll_seconds`: for tests
    /// that must not share an operator. Waits until it is Available.
    pub fn install_watching(
        cluster: &Cluster,
        name: &str,
        namespace: &str,
        poll_seconds: u32,
    ) -> Self {
        run(&[
            "helm",
            "install",
            name,
            "charts/byzsgd-operator",
            "--namespace",
            namespace,
            "--set-string",
            &format!(
                "extraArgs={{--watch-namespace,{namespace},--status-interval-seconds,{poll_seconds}}}"
            ),
        ]);
        let release = Self::installed(name, namespace);
        release.wait_available(cluster, Duration::from_secs(120));
        release
    }

    /// The release's pods (the operator's), in any phase.
    pub fn pods(&self, cluster: &Cluster) -> Vec<k8s_openapi::api::core::v1::Pod> {
        cluster.list(
            &self.namespace,
            &kube::api::ListParams::default()
                .labels(&format!("app.kubernetes.io/instance={}", self.name)),
        )
    }

    /// The operator pod's IP (its `/metrics` is on port 8080).
    pub fn operator_ip(&self, cluster: &Cluster) -> String {
        self.pods(cluster)
            .iter()
            .filter(|p| crate::workload::running(p))
            .find_map(crate::workload::pod_ip)
            .unwrap_or_else(|| panic!("no running operator pod of release {}", self.name))
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let output = run_output(&[
            "helm",
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--wait",
        ]);
        if !output.status.success() {
            eprintln!("warning: could not uninstall release {}", self.name);
        }
    }
}

/// The chart's PodMonitors and ServiceMonitors in `namespace`, as the API server has them.
pub fn monitors_in(namespace: &str) -> (Vec<Value>, Vec<Value>) {
    let items = |kind: &str| -> Vec<Value> {
        let text = quiet(&[
            "kubectl",
            "get",
            kind,
            "--namespace",
            namespace,
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("kubectl get {kind} -o json: {e}"));
        list["items"].as_array().cloned().unwrap_or_default()
    };
    (items("podmonitors"), items("servicemonitors"))
}

/// The scrape configs the Prometheus Operator would make of `namespace`'s monitors.
pub fn scrape_configs(namespace: &str, api: &ApiAccess) -> Vec<Value> {
    let (pod_monitors, service_monitors) = monitors_in(namespace);
    assert!(
        !pod_monitors.is_empty() && !service_monitors.is_empty(),
        "no PodMonitor or ServiceMonitor in {namespace}: was the chart installed with \
         podMonitor.enabled and serviceMonitor.enabled?"
    );
    let mut configs = Vec::new();
    for monitor in &pod_monitors {
        configs.extend(monitors::pod_monitor(monitor, api).unwrap_or_else(|e| panic!("{e}")));
    }
    for monitor in &service_monitors {
        configs.extend(monitors::service_monitor(monitor, api).unwrap_or_else(|e| panic!("{e}")));
    }
    configs
}

/// Starts Prometheus in `dir`, discovering targets through the cluster's API server as the
/// monitors in `namespace` say. The binary is `scripts/prometheus`'s upstream build: Debian's
/// has no Kubernetes discovery.
pub fn prometheus_from_monitors(cluster: &Cluster, namespace: &str, dir: &Path) -> Prometheus {
    let binary = quiet(&["scripts/prometheus"]);
    let api = cluster.api_access(dir);
    let configs = scrape_configs(namespace, &api);
    let text = monitors::prometheus_config(configs, "15s");
    eprintln!("prometheus.yml (from the monitors in {namespace}):\n{text}");
    Prometheus::start_binary(Path::new(binary.trim()), dir, &text)
}

/// The scrape interval of the first PodMonitor endpoint in `namespace` (what Grafana's
/// interval variables derive from).
pub fn pod_scrape_interval(namespace: &str) -> Duration {
    let (pod_monitors, _) = monitors_in(namespace);
    let interval = pod_monitors
        .first()
        .and_then(|m| m["spec"]["podMetricsEndpoints"][0]["interval"].as_str())
        // Without one, the Prometheus Operator's default applies.
        .unwrap_or("30s")
        .to_owned();
    parse_duration(&interval)
        .unwrap_or_else(|| panic!("the PodMonitor's interval {interval} is not a duration"))
}

/// A Prometheus duration of one unit (`15s`, `1m`, `500ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations_parse() {
        assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("15"), None);
        assert_eq!(parse_duration("1d"), None);
    }
}
