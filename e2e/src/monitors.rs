//! The chart's `PodMonitor` and `ServiceMonitor`, as installed in a cluster, turned into the
//! Prometheus scrape configuration the Prometheus Operator would generate from them:
//! `kubernetes_sd_configs` (role `pod`, or `endpoints` for a ServiceMonitor) restricted to the
//! monitor's `namespaceSelector`, `keep`/`drop` rules for its label `selector`, the endpoint's
//! port name, path, interval and `honorLabels`, the operator's standard target labels
//! (`namespace`, `pod`, `container`, `service`, `endpoint`, `job`) and then the endpoint's own
//! `relabelings`. So a test's Prometheus finds exactly the targets a cluster's would.
//!
//! Pure (JSON in, JSON out); the tier-c tests fetch the objects and write the YAML.
//! Not translated, because the chart does not use them: `metricRelabelings`, TLS or auth to
//! targets, sharding, `sampleLimit`, `jobLabel`/`podTargetLabels`/`targetLabels`.

use serde_json::{Value, json};

/// How Prometheus reaches the Kubernetes API server for discovery.
#[derive(Debug, Clone)]
pub struct ApiAccess {
    /// `https://host:port`.
    pub server: String,
    /// PEM file of the cluster CA.
    pub ca_file: String,
    /// PEM file of a client certificate allowed to list and watch pods, services, endpoints.
    pub cert_file: String,
    /// Its key.
    pub key_file: String,
}

/// Why a monitor could not be translated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A field the translation needs is missing or of the wrong type.
    #[error("{kind} {name}: {field} is missing or malformed")]
    Field {
        /// PodMonitor or ServiceMonitor.
        kind: String,
        /// namespace/name.
        name: String,
        /// The field's path.
        field: String,
    },
    /// The monitor uses something the translation does not know.
    #[error("{kind} {name}: {what} is not supported by this translation")]
    Unsupported {
        /// PodMonitor or ServiceMonitor.
        kind: String,
        /// namespace/name.
        name: String,
        /// What.
        what: String,
    },
}

/// Prometheus' form of a Kubernetes label name in meta labels: every character outside
/// `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Escapes a literal for a Prometheus (RE2) regex.
fn regex_literal(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

struct Monitor<'a> {
    kind: &'a str,
    name: String,
    object: &'a Value,
}

impl Monitor<'_> {
    fn field(&self, field: &str) -> Error {
        Error::Field {
            kind: self.kind.to_owned(),
            name: self.name.clone(),
            field: field.to_owned(),
        }
    }

    fn unsupported(&self, what: String) -> Error {
        Error::Unsupported {
            kind: self.kind.to_owned(),
            name: self.name.clone(),
            what,
        }
    }

    /// `keep`/`drop` rules for `spec.selector` on meta labels `<prefix>label_…`.
    fn selector_rules(&self, prefix: &str) -> Result<Vec<Value>, Error> {
        let selector = &self.object["spec"]["selector"];
        let mut rules = Vec::new();
        if let Some(labels) = selector["matchLabels"].as_object() {
            for (key, value) in labels {
                let value = value
                    .as_str()
                    .ok_or_else(|| self.field(&format!("spec.selector.matchLabels.{key}")))?;
                let key = sanitize(key);
                rules.push(json!({
                    "action": "keep",
                    "source_labels": [format!("{prefix}label_{key}"), format!("{prefix}labelpresent_{key}")],
                    "regex": format!("({});true", regex_literal(value)),
                }));
            }
        }
        for (i, expression) in selector["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = |part: &str| format!("spec.selector.matchExpressions[{i}].{part}");
            let key = sanitize(
                expression["key"]
                    .as_str()
                    .ok_or_else(|| self.field(&at("key")))?,
            );
            let operator = expression["operator"]
                .as_str()
                .ok_or_else(|| self.field(&at("operator")))?;
            let values: Vec<String> = expression["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(regex_literal)
                .collect();
            let present = format!("{prefix}labelpresent_{key}");
            let label = format!("{prefix}label_{key}");
            let rule = match operator {
                "Exists" => json!({"action": "keep", "source_labels": [present], "regex": "true"}),
                "DoesNotExist" => {
                    json!({"action": "drop", "source_labels": [present], "regex": "true"})
                }
                "In" => json!({"action": "keep", "source_labels": [label, present],
                               "regex": format!("({});true", values.join("|"))}),
                "NotIn" => json!({"action": "drop", "source_labels": [label, present],
                                  "regex": format!("({});true", values.join("|"))}),
                other => return Err(self.unsupported(format!("selector operator {other}"))),
            };
            rules.push(rule);
        }
        Ok(rules)
    }

    /// The discovery block, restricted to `spec.namespaceSelector`.
    fn discovery(&self, role: &str, api: &ApiAccess) -> Result<Value, Error> {
        let own = self.object["metadata"]["namespace"]
            .as_str()
            .ok_or_else(|| self.field("metadata.namespace"))?;
        let selector = &self.object["spec"]["namespaceSelector"];
        let mut sd = json!({
            "role": role,
            "api_server": api.server,
            "tls_config": {"ca_file": api.ca_file, "cert_file": api.cert_file, "key_file": api.key_file},
        });
        if selector["any"].as_bool() != Some(true) {
            let names: Vec<&str> = match selector["matchNames"].as_array() {
                Some(names) => names.iter().filter_map(Value::as_str).collect(),
                None => vec![own],
            };
            sd["namespaces"] = json!({"names": names});
        }
        Ok(sd)
    }

    /// The endpoint's own `relabelings`, in Prometheus' spelling.
    fn relabelings(&self, endpoint: &Value, at: &str) -> Result<Vec<Value>, Error> {
        let mut rules = Vec::new();
        for (i, rule) in endpoint["relabelings"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let object = rule
                .as_object()
                .ok_or_else(|| self.field(&format!("{at}.relabelings[{i}]")))?;
            let mut out = serde_json::Map::new();
            for (key, value) in object {
                let key = match key.as_str() {
                    "sourceLabels" => "source_labels",
                    "targetLabel" => "target_label",
                    "separator" | "regex" | "replacement" | "modulus" => key.as_str(),
                    "action" => {
                        let action = value.as_str().unwrap_or_default().to_lowercase();
                        out.insert("action".to_owned(), json!(action));
                        continue;
                    }
                    other => {
                        return Err(self.unsupported(format!("{at}.relabelings[{i}].{other}")));
                    }
                };
                out.insert(key.to_owned(), value.clone());
            }
            rules.push(Value::Object(out));
        }
        Ok(rules)
    }

    fn scrape_settings(endpoint: &Value, job_name: String, sd: Value) -> Value {
        let mut config = json!({
            "job_name": job_name,
            "honor_labels": endpoint["honorLabels"].as_bool().unwrap_or(false),
            "kubernetes_sd_configs": [sd],
            "metrics_path": endpoint["path"].as_str().unwrap_or("/metrics"),
            "scheme": endpoint["scheme"].as_str().unwrap_or("http"),
        });
        for (from, to) in [
            ("interval", "scrape_interval"),
            ("scrapeTimeout", "scrape_timeout"),
        ] {
            if let Some(value) = endpoint[from].as_str() {
                config[to] = json!(value);
            }
        }
        config
    }
}

fn named<'a>(kind: &'a str, object: &'a Value) -> Monitor<'a> {
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("?");
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    Monitor {
        kind,
        name: format!("{namespace}/{name}"),
        object,
    }
}

/// One scrape config per `podMetricsEndpoints` entry of a PodMonitor (`monitoring.coreos.com/v1`
/// JSON, as the API server returns it).
pub fn pod_monitor(object: &Value, api: &ApiAccess) -> Result<Vec<Value>, Error> {
    let monitor = named("PodMonitor", object);
    let endpoints = object["spec"]["podMetricsEndpoints"]
        .as_array()
        .ok_or_else(|| monitor.field("spec.podMetricsEndpoints"))?;
    let selector = monitor.selector_rules("__meta_kubernetes_pod_")?;
    let mut configs = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let at = format!("spec.podMetricsEndpoints[{i}]");
        let port = endpoint["port"]
            .as_str()
            .ok_or_else(|| monitor.unsupported(format!("{at} without a port name")))?;
        // As the Prometheus Operator does: only running pods, the selected ones, the named port.
        let mut rules = vec![json!({
            "action": "drop",
            "source_labels": ["__meta_kubernetes_pod_phase"],
            "regex": "(Failed|Succeeded)",
        })];
        rules.extend(selector.iter().cloned());
        rules.push(json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": regex_literal(port),
        }));
        rules.extend(standard_labels(&[
            ("__meta_kubernetes_namespace", "namespace"),
            ("__meta_kubernetes_pod_container_name", "container"),
            ("__meta_kubernetes_pod_name", "pod"),
        ]));
        rules.push(json!({"target_label": "job", "replacement": monitor.name}));
        rules.push(json!({"target_label": "endpoint", "replacement": port}));
        rules.extend(monitor.relabelings(endpoint, &at)?);
        let sd = monitor.discovery("pod", api)?;
        let mut config =
            Monitor::scrape_settings(endpoint, format!("podMonitor/{}/{i}", monitor.name), sd);
        config["relabel_configs"] = Value::Array(rules);
        configs.push(config);
    }
    Ok(configs)
}

/// One scrape config per `endpoints` entry of a ServiceMonitor (`monitoring.coreos.com/v1`
/// JSON), discovering the selected Services' endpoints (role `endpoints`).
pub fn service_monitor(object: &Value, api: &ApiAccess) -> Result<Vec<Value>, Error> {
    let monitor = named("ServiceMonitor", object);
    let endpoints = object["spec"]["endpoints"]
        .as_array()
        .ok_or_else(|| monitor.field("spec.endpoints"))?;
    let selector = monitor.selector_rules("__meta_kubernetes_service_")?;
    let mut configs = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let at = format!("spec.endpoints[{i}]");
        let port = endpoint["port"]
            .as_str()
            .ok_or_else(|| monitor.unsupported(format!("{at} without a port name")))?;
        let mut rules = selector.clone();
        rules.push(json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_endpoint_port_name"],
            "regex": regex_literal(port),
        }));
        rules.extend(standard_labels(&[
            ("__meta_kubernetes_namespace", "namespace"),
            ("__meta_kubernetes_service_name", "service"),
            ("__meta_kubernetes_pod_name", "pod"),
            ("__meta_kubernetes_pod_container_name", "container"),
            // The Prometheus Operator names the job after the Service (no jobLabel here).
            ("__meta_kubernetes_service_name", "job"),
        ]));
        rules.push(json!({"target_label": "endpoint", "replacement": port}));
        rules.extend(monitor.relabelings(endpoint, &at)?);
        let sd = monitor.discovery("endpoints", api)?;
        let mut config =
            Monitor::scrape_settings(endpoint, format!("serviceMonitor/{}/{i}", monitor.name), sd);
        config["relabel_configs"] = Value::Array(rules);
        configs.push(config);
    }
    Ok(configs)
}

fn standard_labels(pairs: &[(&str, &str)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(source, target)| json!({"source_labels": [source], "target_label": target}))
        .collect()
}

/// A whole `prometheus.yml`: `global` with `scrape_interval` and `evaluation_interval`, then the
/// given scrape configs, as YAML.
pub fn prometheus_config(scrape_configs: Vec<Value>, evaluation_interval: &str) -> String {
    let config = json!({
        "global": {"scrape_interval": "15s", "evaluation_interval": evaluation_interval},
        "scrape_configs": scrape_configs,
    });
    serde_yaml_ng::to_string(&config).expect("JSON values serialise as YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> ApiAccess {
        ApiAccess {
            server: "https://10.244.0.1:16443".to_owned(),
            ca_file: "/t/ca.crt".to_owned(),
            cert_file: "/t/admin.crt".to_owned(),
            key_file: "/t/admin.key".to_owned(),
        }
    }

    /// The chart's PodMonitor as `helm template` renders it (defaults).
    fn pod_monitor_object() -> Value {
        json!({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": {"name": "byzsgd-byzsgd-operator-jobs", "namespace": "byzsgd-system"},
            "spec": {
                "selector": {
                    "matchLabels": {"app.kubernetes.io/name": "byzsgd-node"},
                    "matchExpressions": [{"key": "byzsgd.io/job", "operator": "Exists"}]
                },
                "namespaceSelector": {"any": true},
                "podMetricsEndpoints": [{
                    "port": "admin", "path": "/metrics", "interval": "15s",
                    "relabelings": [
                        {"sourceLabels": ["__meta_kubernetes_pod_label_byzsgd_io_job"], "targetLabel": "job_name"},
                        {"sourceLabels": ["__meta_kubernetes_pod_label_byzsgd_io_role",
                                          "__meta_kubernetes_pod_label_byzsgd_io_index"],
                         "separator": "-", "targetLabel": "node", "action": "Replace"}
                    ]
                }]
            }
        })
    }

    #[test]
    fn label_names_are_sanitized_as_prometheus_does() {
        assert_eq!(sanitize("app.kubernetes.io/name"), "app_kubernetes_io_name");
        assert_eq!(sanitize("byzsgd.io/job"), "byzsgd_io_job");
    }

    #[test]
    fn a_pod_monitor_becomes_pod_discovery_with_its_selector_port_path_and_relabelings() {
        let configs = pod_monitor(&pod_monitor_object(), &api()).expect("translates");
        assert_eq!(configs.len(), 1);
        let config = &configs[0];
        assert_eq!(config["metrics_path"], "/metrics");
        assert_eq!(config["scrape_interval"], "15s");
        assert_eq!(config["honor_labels"], false);
        let sd = &config["kubernetes_sd_configs"][0];
        assert_eq!(sd["role"], "pod");
        assert!(sd.get("namespaces").is_none(), "any: true watches all");
        assert_eq!(sd["tls_config"]["cert_file"], "/t/admin.crt");
        let rules = config["relabel_configs"].as_array().expect("rules");
        assert!(rules.contains(&json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                              "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name"],
            "regex": "(byzsgd-node);true"
        })));
        assert!(rules.contains(&json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_labelpresent_byzsgd_io_job"],
            "regex": "true"
        })));
        assert!(rules.contains(&json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": "admin"
        })));
        // The chart's relabelings come last, after the standard labels, in Prometheus' spelling.
        let last = rules.last().expect("a rule");
        assert_eq!(last["target_label"], "node");
        assert_eq!(last["separator"], "-");
        assert_eq!(last["action"], "replace");
        let yaml = prometheus_config(configs, "15s");
        assert!(yaml.contains("kubernetes_sd_configs"), "{yaml}");
    }

    #[test]
    fn a_service_monitor_becomes_endpoints_discovery_in_its_namespaces() {
        let object = json!({
            "kind": "ServiceMonitor",
            "metadata": {"name": "byzsgd-byzsgd-operator", "namespace": "byzsgd-system"},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/instance": "byzsgd"}},
                "namespaceSelector": {"matchNames": ["byzsgd-system"]},
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s",
                               "honorLabels": true}]
            }
        });
        let configs = service_monitor(&object, &api()).expect("translates");
        let config = &configs[0];
        assert_eq!(config["honor_labels"], true);
        assert_eq!(config["scrape_interval"], "30s");
        let sd = &config["kubernetes_sd_configs"][0];
        assert_eq!(sd["role"], "endpoints");
        assert_eq!(sd["namespaces"]["names"], json!(["byzsgd-system"]));
        let rules = config["relabel_configs"].as_array().expect("rules");
        assert!(rules.contains(&json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance",
                              "__meta_kubernetes_service_labelpresent_app_kubernetes_io_instance"],
            "regex": "(byzsgd);true"
        })));
        assert!(rules.contains(&json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_endpoint_port_name"],
            "regex": "metrics"
        })));
    }

    #[test]
    fn no_namespace_selector_means_the_monitors_own_namespace() {
        let mut object = pod_monitor_object();
        object["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("namespaceSelector");
        let configs = pod_monitor(&object, &api()).expect("translates");
        assert_eq!(
            configs[0]["kubernetes_sd_configs"][0]["namespaces"]["names"],
            json!(["byzsgd-system"])
        );
    }

    #[test]
    fn what_the_translation_does_not_know_is_an_error_not_silence() {
        let mut object = pod_monitor_object();
        object["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["labeldrop"] = json!("x");
        let error = pod_monitor(&object, &api()).expect_err("unknown field");
        assert!(error.to_string().contains("labeldrop"), "{error}");
        let mut object = pod_monitor_object();
        object["spec"]["selector"]["matchExpressions"][0]["operator"] = json!("Gt");
        assert!(pod_monitor(&object, &api()).is_err());
        let mut object = pod_monitor_object();
        object["spec"]["podMetricsEndpoints"][0]
            .as_object_mut()
            .expect("endpoint")
            .remove("port");
        assert!(pod_monitor(&object, &api()).is_err());
    }
}
