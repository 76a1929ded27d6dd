//! The Helm chart `charts/byzsgd-operator` with real tools: `helm lint` with Helm 3 and Helm 4,
//! `helm template | kubectl apply --dry-run=server` against the testbed with the Prometheus
//! Operator's real CRDs installed, `helm install` with the operator pod scheduled onto the kwok
//! node and its RBAC checked, `helm uninstall`; and the chart's CRDs kept equal to `crds/`.
//!
//! Run with `testbed/with-testbed --tier b -- cargo test -p byzsgd-operator --test chart`.
//! `helm`, `helm4` and `kubectl` come from the testbed's bin dir (`testbed/build
//! --print-bin-dir`); a missing one fails the test, naming `testbed/build`.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    core::v1::Pod,
};
use kube::{
    Api,
    api::{ListParams, PostParams},
    runtime::wait::conditions,
};
use support::{TestNamespace, Testbed, unique_name, wait_for};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/byzsgd-operator");

/// Values that turn on every optional object of the chart.
const EVERYTHING_ON: &str = "serviceMonitor.enabled=true,podMonitor.enabled=true,\
                             prometheusRule.enabled=true,dashboards.enabled=true";

/// Kinds the chart renders with [`EVERYTHING_ON`] (the CRDs come on top, from `crds/`).
const RENDERED_KINDS: [&str; 11] = [
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "Deployment",
    "PodMonitor",
    "PrometheusRule",
    "Role",
    "RoleBinding",
    "Service",
    "ServiceAccount",
    "ServiceMonitor",
];

/// The Prometheus Operator CRDs the chart's optional objects need.
const MONITORING_CRDS: [&str; 3] = ["servicemonitors", "podmonitors", "prometheusrules"];

/// The testbed's bin dir, holding `helm` (3), `helm4` and `kubectl`.
fn bin_dir() -> PathBuf {
    let output = Command::new(format!("{REPO}/testbed/build"))
        .arg("--print-bin-dir")
        .output()
        .expect("running testbed/build --print-bin-dir");
    assert!(
        output.status.success(),
        "testbed/build --print-bin-dir failed"
    );
    let dir = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    for tool in ["helm", "helm4", "kubectl"] {
        assert!(
            dir.join(tool).is_file(),
            "{} is missing: build the testbed with `testbed/build`",
            dir.join(tool).display()
        );
    }
    dir
}

fn tool(name: &str) -> Command {
    Command::new(bin_dir().join(name))
}

/// Runs `command` (with `stdin` piped in if given) and returns its stdout, panicking with both
/// streams when it fails.
fn run(command: &mut Command, stdin: Option<&str>) -> String {
    let output = output_of(command, stdin);
    assert!(
        output.status.success(),
        "{command:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn output_of(command: &mut Command, stdin: Option<&str>) -> Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn yaml_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| {
                    Path::new(name).extension().is_some_and(|ext| {
                        ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml")
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Splits a multi-document YAML stream into parsed documents, skipping empty ones.
fn documents(stream: &str) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(stream)
        .map(|doc| serde_yaml_ng::Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn template(helm: &str, release: &str, namespace: &str, extra: &[&str]) -> String {
    run(
        tool(helm)
            .args(["template", release, CHART, "--namespace", namespace])
            .args(["--include-crds", "--set", EVERYTHING_ON])
            .args(extra),
        None,
    )
}

#[test]
fn chart_crds_are_copies_of_the_generated_crds() {
    let generated = Path::new(REPO).join("crds");
    let copied = Path::new(CHART).join("crds");
    let sources = yaml_files(&generated);
    assert!(
        !sources.is_empty(),
        "{} holds no CRD: it is generated by `cargo run -p byzsgd-operator -- crd` (the operator \
         issue); then copy it into the chart with `charts/sync-crds`",
        generated.display()
    );
    assert_eq!(
        yaml_files(&copied),
        sources,
        "the chart's crds/ must hold exactly the files of crds/: run `charts/sync-crds`"
    );
    for name in &sources {
        assert!(
            std::fs::read(generated.join(name)).unwrap()
                == std::fs::read(copied.join(name)).unwrap(),
            "charts/byzsgd-operator/crds/{name} differs from crds/{name}: run `charts/sync-crds`"
        );
    }
}

/// The rules of the first `kind` document in a YAML stream.
fn rules_of(stream: &str, kind: &str) -> serde_yaml_ng::Value {
    documents(stream)
        .into_iter()
        .find(|doc| doc["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in the stream"))["rules"]
        .clone()
}

/// `operator/rbac.yaml` is the operator's own statement of what it calls (for installs without
/// Helm); the chart must grant exactly the same, no more and no less.
#[test]
fn chart_rbac_grants_what_operator_rbac_yaml_states() {
    let stated = std::fs::read_to_string(Path::new(REPO).join("operator/rbac.yaml")).unwrap();
    let rendered = template("helm", "rbac", "byzsgd-system", &[]);
    assert_eq!(
        rules_of(&rendered, "ClusterRole"),
        rules_of(&stated, "ClusterRole"),
        "charts/byzsgd-operator/templates/rbac.yaml and operator/rbac.yaml disagree"
    );
    assert_eq!(
        rules_of(&rendered, "Role"),
        rules_of(&stated, "Role"),
        "the leader-election Role of the chart and operator/rbac.yaml disagree"
    );
}

#[test]
fn helm_lint_is_clean_with_helm_3_and_helm_4() {
    for helm in ["helm", "helm4"] {
        for values in [None, Some(EVERYTHING_ON)] {
            let mut command = tool(helm);
            command.args(["lint", "--strict", CHART]);
            if let Some(values) = values {
                command.args(["--set", values]);
            }
            let report = run(&mut command, None);
            assert!(
                report.contains("0 chart(s) failed")
                    && !report.contains("[WARNING]")
                    && !report.contains("[ERROR]"),
                "{helm} lint ({values:?}):\n{report}"
            );
        }
    }
}

#[test]
fn chart_embeds_the_rule_files_and_dashboards_unchanged() {
    let rendered = documents(&template("helm", "embed", "embedding", &[]));
    let find = |kind: &str| {
        rendered
            .iter()
            .find(|doc| doc["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"))
    };

    // The PrometheusRule's groups are the groups of rules/*.yaml, in file order.
    let mut groups = Vec::new();
    let mut rule_files: Vec<PathBuf> = yaml_files(&Path::new(CHART).join("rules"))
        .into_iter()
        .map(|name| Path::new(CHART).join("rules").join(name))
        .collect();
    rule_files.sort();
    assert!(!rule_files.is_empty(), "no rules/*.yaml in the chart");
    for path in rule_files {
        let file: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        groups.extend(file["groups"].as_sequence().unwrap().iter().cloned());
    }
    assert_eq!(
        find("PrometheusRule")["spec"]["groups"],
        serde_yaml_ng::Value::Sequence(groups),
        "the PrometheusRule must carry rules/*.yaml unchanged"
    );

    // The ConfigMap holds every dashboard, labelled for the Grafana sidecar.
    let config_map = find("ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = config_map["data"].as_mapping().unwrap();
    let dashboards_dir = Path::new(CHART).join("dashboards");
    let files: Vec<_> = std::fs::read_dir(&dashboards_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(data.len(), files.len(), "one ConfigMap key per dashboard");
    for path in files {
        let key = path.file_name().unwrap().to_string_lossy().into_owned();
        let embedded: serde_json::Value = serde_json::from_str(
            data.get(key.as_str())
                .and_then(serde_yaml_ng::Value::as_str)
                .unwrap_or_else(|| panic!("{key} missing from the dashboards ConfigMap")),
        )
        .unwrap();
        let original: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            embedded, original,
            "{key} changed on its way into the ConfigMap"
        );
    }

    // Values reach the objects: the sidecar label, alert labels and per-alert overrides.
    let customised = documents(&template(
        "helm",
        "embed",
        "embedding",
        &[
            "--set",
            "dashboards.label=my_dashboards,dashboards.labelValue=yes",
            "--set",
            "prometheusRule.ruleLabels.team=ml",
            "--set",
            "prometheusRule.overrides.ByzSGDDriftAboveBound.for=20m",
        ],
    ));
    let config_map = customised
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    assert_eq!(config_map["metadata"]["labels"]["my_dashboards"], "yes");
    let rule = customised
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .unwrap();
    let rules = rule["spec"]["groups"][0]["rules"].as_sequence().unwrap();
    for alert in rules {
        assert_eq!(alert["labels"]["team"], "ml", "{alert:?}");
        assert!(alert["labels"]["severity"].is_string(), "own labels kept");
    }
    let drift = rules
        .iter()
        .find(|r| r["alert"] == "ByzSGDDriftAboveBound")
        .unwrap();
    assert_eq!(drift["for"], "20m");
}

#[test]
fn misspelt_or_contradictory_values_fail_with_a_message() {
    for (values, message) in [
        // values.schema.json rejects unknown keys, so a typo cannot silently do nothing.
        (
            "serviceMonitor.enable=true",
            "additional properties 'enable' not allowed",
        ),
        (
            "replicaCount=2,leaderElection.enabled=false",
            "replicaCount > 1 needs leaderElection.enabled",
        ),
        (
            "serviceAccount.create=false",
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
    ] {
        for helm in ["helm", "helm4"] {
            let output = output_of(
                tool(helm).args(["template", "bad", CHART, "--set", values]),
                None,
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{helm}: {values} rendered");
            assert!(stderr.contains(message), "{helm}: {values}: {stderr}");
        }
    }
}

/// Installs the Prometheus Operator CRDs (fetched by `charts/prometheus-operator-crds` through
/// the Go module proxy) with server-side apply, which is idempotent and has no size limit.
fn install_monitoring_crds() {
    let output = output_of(
        &mut Command::new(format!("{REPO}/charts/prometheus-operator-crds")),
        None,
    );
    assert!(
        output.status.success(),
        "charts/prometheus-operator-crds failed (it needs `go` and the Go module proxy):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    for plural in MONITORING_CRDS {
        let file = dir.join(format!("monitoring.coreos.com_{plural}.yaml"));
        run(
            tool("kubectl")
                .args(["apply", "--server-side", "--force-conflicts"])
                .args(["--field-manager", "byzsgd-chart-test", "-f"])
                .arg(&file),
            None,
        );
    }
    let names: Vec<String> = MONITORING_CRDS
        .iter()
        .map(|plural| format!("crd/{plural}.monitoring.coreos.com"))
        .collect();
    run(
        tool("kubectl")
            .args(["wait", "--for=condition=Established", "--timeout=60s"])
            .args(&names),
        None,
    );
}

#[tokio::test]
async fn every_rendered_object_passes_a_server_side_dry_run() {
    let testbed = Testbed::connect().await;
    install_monitoring_crds();
    let namespace = TestNamespace::create(&testbed, "chart-dry-run").await;
    for helm in ["helm", "helm4"] {
        let release = unique_name("dry");
        let manifest = template(helm, &release, &namespace.name, &[]);
        let report = run(
            tool("kubectl").args([
                "apply",
                "--dry-run=server",
                "--namespace",
                &namespace.name,
                "-f",
                "-",
            ]),
            Some(&manifest),
        );
        let accepted: BTreeSet<&str> = report
            .lines()
            .filter(|line| line.ends_with("(server dry run)"))
            .filter_map(|line| line.split('/').next())
            .collect();
        let documents = documents(&manifest).len();
        assert_eq!(
            report.lines().count(),
            documents,
            "{helm}: one accepted object per rendered document:\n{report}"
        );
        for kind in RENDERED_KINDS {
            let group_kind = accepted
                .iter()
                .any(|accepted| accepted.split('.').next() == Some(&kind.to_lowercase()));
            assert!(group_kind, "{helm}: no {kind} accepted:\n{report}");
        }
    }
    namespace.delete().await;
}

/// Asks the API server's authorizer (a SubjectAccessReview, as `kubectl auth can-i` does, but
/// with an explicit group so it works before the ByzSGDJob CRD exists) whether the operator's
/// ServiceAccount may `verb` `group`/`resource` (`resource` may be `byzsgdjobs/status`) in
/// `namespace`. RBAC changes reach the authorizer through informers, so this polls (up to 20 s)
/// until the answer is `expected`, and returns the last answer.
async fn can_i(
    testbed: &Testbed,
    service_account: (&str, &str),
    verb: &str,
    (group, resource): (&str, &str),
    namespace: &str,
    expected: bool,
) -> bool {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let (sa_namespace, sa_name) = service_account;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{sa_namespace}:{sa_name}")),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{sa_namespace}"),
                "system:authenticated".to_owned(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource: Some(subresource.to_owned()).filter(|s| !s.is_empty()),
                verb: Some(verb.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(testbed.client.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .expect("creating a SubjectAccessReview")
            .status
            .is_some_and(|status| status.allowed);
        if answer == expected || std::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Waits for the pod matching `selector` in `namespace` to exist, then to run, and returns it.
async fn running_pod(namespace: &TestNamespace, selector: &str) -> Pod {
    let pods = namespace.api::<Pod>();
    let deadline = std::time::Instant::now() + support::WAIT;
    let name = loop {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        if let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) {
            break name;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pod matches {selector} in {}",
            namespace.name
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    wait_for(
        pods,
        &name,
        "the operator pod to run",
        conditions::is_pod_running(),
    )
    .await
    .unwrap()
}

/// What the operator's ServiceAccount may and may not do, as the authorizer answers.
async fn assert_least_privilege(
    testbed: &Testbed,
    sa: (&str, &str),
    release_namespace: &str,
    helm: &str,
) {
    let elsewhere = "default";
    for (verb, resource, ns, allowed) in [
        ("watch", ("byzsgd.io", "byzsgdjobs"), elsewhere, true),
        ("patch", ("byzsgd.io", "byzsgdjobs/status"), elsewhere, true),
        ("create", ("byzsgd.io", "byzsgdjobs"), elsewhere, false),
        ("delete", ("", "pods"), elsewhere, true),
        ("create", ("", "configmaps"), elsewhere, true),
        ("create", ("", "events"), elsewhere, false),
        ("delete", ("byzsgd.io", "byzsgdjobs"), elsewhere, true),
        ("create", ("", "services"), elsewhere, true),
        ("create", ("events.k8s.io", "events"), elsewhere, true),
        // Secrets: only the chaos token it creates and reads by name; never list them.
        ("get", ("", "secrets"), elsewhere, true),
        ("create", ("", "secrets"), elsewhere, true),
        ("list", ("", "secrets"), elsewhere, false),
        ("update", ("", "secrets"), elsewhere, false),
        ("watch", ("byzsgd.io", "byzantinechaos"), elsewhere, true),
        ("patch", ("byzsgd.io", "byzantinechaos"), elsewhere, true),
        (
            "patch",
            ("byzsgd.io", "byzantinechaos/status"),
            elsewhere,
            true,
        ),
        ("create", ("byzsgd.io", "byzantinechaos"), elsewhere, false),
        ("delete", ("byzsgd.io", "byzantinechaos"), elsewhere, false),
        ("create", ("apps", "deployments"), elsewhere, false),
        (
            "patch",
            ("coordination.k8s.io", "leases"),
            release_namespace,
            true,
        ),
        ("patch", ("coordination.k8s.io", "leases"), elsewhere, false),
    ] {
        assert_eq!(
            can_i(testbed, sa, verb, resource, ns, allowed).await,
            allowed,
            "{helm}: may the operator {verb} {resource:?} in {ns}?"
        );
    }
}

#[tokio::test]
async fn helm_install_schedules_the_operator_then_uninstalls() {
    let testbed = Testbed::connect().await;
    let kwok_node = testbed.require_tier_b().await;
    for helm in ["helm", "helm4"] {
        let namespace = TestNamespace::create(&testbed, &format!("chart-{helm}")).await;
        namespace.wait_for_default_service_account().await;
        let release = unique_name("byzsgd");
        run(
            tool(helm).args(["install", &release, CHART, "--namespace", &namespace.name]),
            None,
        );

        // The Deployment's pod lands on the kwok node and (kwok being its kubelet) runs.
        let selector = format!("app.kubernetes.io/instance={release}");
        let spec = running_pod(&namespace, &selector).await.spec.unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(kwok_node.as_str()),
            "{helm}"
        );
        let container = &spec.containers[0];
        let security = container.security_context.clone().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
        let env = container.env.clone().unwrap();
        assert!(
            env.iter().any(|v| v.name == "POD_NAMESPACE"),
            "the lease namespace comes from the downward API"
        );

        // Least privilege, as the operator's ServiceAccount sees it.
        let sa_name = spec.service_account_name.unwrap();
        let sa = (namespace.name.as_str(), sa_name.as_str());
        let elsewhere = "default";
        assert_least_privilege(&testbed, sa, &namespace.name, helm).await;

        run(
            tool(helm).args([
                "uninstall",
                &release,
                "--namespace",
                &namespace.name,
                "--wait",
            ]),
            None,
        );
        let deployments = namespace.api::<Deployment>();
        let left = deployments
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        assert!(
            left.items.is_empty(),
            "{helm}: the Deployment outlived the release"
        );
        assert!(
            !can_i(
                &testbed,
                sa,
                "watch",
                ("byzsgd.io", "byzsgdjobs"),
                elsewhere,
                false
            )
            .await,
            "{helm}: the ClusterRoleBinding outlived the release"
        );
        namespace.delete().await;
    }
}
