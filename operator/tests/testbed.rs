//! Integration tests of the offline Kubernetes testbed itself (`testbed/`), run against the real
//! control plane: they pin down what later operator tests rely on, namely the stamped server
//! version, CRDs served through kube-rs, server-side apply, the status subresource, garbage
//! collection, scheduling onto kwok nodes and namespace deletion.
//!
//! Run them with `testbed/with-testbed --tier b -- cargo test -p byzsgd-operator --test testbed`
//! (or `eval "$(testbed/up --tier b)"` first). Without a testbed they fail, naming `testbed/up`.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{ConfigMap, Container, Namespace, Pod, PodSpec},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, CustomResource, CustomResourceExt, Resource, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::wait::conditions,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{TestNamespace, Testbed, wait_for};

/// A small test-only custom resource; the real ByzSGDJob CRD comes with the operator.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "testbed.byzsgd.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
}

/// Status of a [`Widget`], written only through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
struct WidgetStatus {
    ready: bool,
}

// The Kubernetes minor that k8s-openapi is compiled for (the operator's `v1_36` feature). When
// the feature moves, this stops compiling on purpose: move the testbed's K8S_VERSION with it.
k8s_openapi::k8s_if_1_36! {
    const OPENAPI_MINOR: &str = "36";
}

/// Reads `K8S_VERSION=...` from `testbed/lib/common.sh`, the single place the version is pinned.
fn pinned_k8s_version() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testbed/lib/common.sh");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION="))
        .unwrap_or_else(|| panic!("no K8S_VERSION= line in {path}"))
        .trim()
        .to_owned()
}

/// Applies the Widget CRD and waits until the API server serves it (structural schema).
async fn install_widget_crd(testbed: &Testbed) -> CustomResourceDefinition {
    support::install_crd(testbed, &Widget::crd(), "testbed-tests").await
}

#[tokio::test]
async fn missing_testbed_fails_with_a_message_naming_testbed_up() {
    let err = Testbed::try_connect(None)
        .await
        .err()
        .expect("no KUBECONFIG must be an error");
    assert!(
        err.to_string().contains("testbed/up"),
        "message does not name testbed/up: {err}"
    );

    // A kubeconfig whose API server is down: port 1 on loopback refuses connections.
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", support::unique_name("down")));
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\n\
         contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .expect("writing the temporary kubeconfig");
    let result = Testbed::try_connect(Some(path.clone().into_os_string())).await;
    std::fs::remove_file(&path).expect("removing the temporary kubeconfig");
    let err = result
        .err()
        .expect("an unreachable API server must be an error");
    assert!(
        matches!(err, support::TestbedError::Unreachable { .. }),
        "expected Unreachable, got {err:?}"
    );
    assert!(
        err.to_string().contains("testbed/up"),
        "message does not name testbed/up: {err}"
    );
}

#[tokio::test]
async fn server_reports_the_stamped_version() {
    let testbed = Testbed::connect().await;
    let info = testbed
        .client
        .apiserver_version()
        .await
        .expect("GET /version");
    let pinned = pinned_k8s_version();
    assert_eq!(
        info.git_version, pinned,
        "unstamped or wrong kube-apiserver build"
    );
    assert_eq!(info.git_tree_state, "clean");
    assert_eq!(info.major, "1");
    // The operator compiles k8s-openapi for one minor (feature v1_36); the server must match it.
    let minor = pinned
        .split('.')
        .nth(1)
        .expect("K8S_VERSION looks like v1.MINOR.PATCH");
    assert_eq!(info.minor, minor);
    assert_eq!(
        OPENAPI_MINOR, minor,
        "k8s-openapi feature does not match the testbed"
    );
}

#[tokio::test]
async fn crd_is_served_with_server_side_apply_and_status_subresource() {
    let testbed = Testbed::connect().await;
    install_widget_crd(&testbed).await;
    let ns = TestNamespace::create(&testbed, "crd").await;
    let widgets: Api<Widget> = ns.api();

    // Manager "alice" creates the widget by server-side apply.
    let alice = PatchParams::apply("alice");
    let spec = json!({"apiVersion": "testbed.byzsgd.dev/v1", "kind": "Widget",
                      "metadata": {"name": "w"}, "spec": {"size": 1, "label": "a"}});
    let created = widgets
        .patch("w", &alice, &Patch::Apply(&spec))
        .await
        .expect("first apply");
    assert_eq!(
        created.spec,
        WidgetSpec {
            size: 1,
            label: Some("a".into())
        }
    );
    assert_eq!(created.metadata.generation, Some(1));
    let listed = widgets
        .list(&ListParams::default())
        .await
        .expect("listing widgets");
    assert_eq!(listed.items.len(), 1, "the CRD is not served: {listed:?}");

    // A second manager changing alice's field conflicts unless it forces the change.
    let bob = json!({"apiVersion": "testbed.byzsgd.dev/v1", "kind": "Widget",
                     "metadata": {"name": "w"}, "spec": {"size": 2}});
    let conflict = widgets
        .patch("w", &PatchParams::apply("bob"), &Patch::Apply(&bob))
        .await;
    match conflict {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("expected a 409 field-manager conflict, got {other:?}"),
    }
    let forced = widgets
        .patch("w", &PatchParams::apply("bob").force(), &Patch::Apply(&bob))
        .await
        .expect("forced apply");
    assert_eq!(forced.spec.size, 2);
    assert_eq!(
        forced.spec.label.as_deref(),
        Some("a"),
        "bob's apply must keep alice's label"
    );

    // Alice re-applies without the label (and without size, now bob's): the label she owned
    // is removed, bob's size stays.
    let alice_again = json!({"apiVersion": "testbed.byzsgd.dev/v1", "kind": "Widget",
                             "metadata": {"name": "w"}, "spec": {}});
    let pruned = widgets
        .patch("w", &alice, &Patch::Apply(&alice_again))
        .await
        .expect("re-apply");
    assert_eq!(
        pruned.spec,
        WidgetSpec {
            size: 2,
            label: None
        }
    );
    let generation = pruned.metadata.generation;

    // Status goes through the subresource only: the main endpoint ignores it...
    let sneaky = json!({"apiVersion": "testbed.byzsgd.dev/v1", "kind": "Widget",
                        "metadata": {"name": "w"}, "status": {"ready": true}});
    let ignored = widgets
        .patch("w", &alice, &Patch::Apply(&sneaky))
        .await
        .expect("apply status");
    assert_eq!(
        ignored.status, None,
        "status was written through the main endpoint"
    );
    // ...and the status endpoint writes it without bumping the generation.
    let status = json!({"apiVersion": "testbed.byzsgd.dev/v1", "kind": "Widget",
                        "metadata": {"name": "w"}, "status": {"ready": true}});
    let updated = widgets
        .patch_status(
            "w",
            &PatchParams::apply("status-writer"),
            &Patch::Apply(&status),
        )
        .await
        .expect("status apply");
    assert_eq!(updated.status, Some(WidgetStatus { ready: true }));
    assert_eq!(
        updated.metadata.generation, generation,
        "a status write bumped the generation"
    );
    assert_eq!(
        widgets.get("w").await.expect("get").status,
        Some(WidgetStatus { ready: true })
    );

    ns.delete().await;
}

#[tokio::test]
async fn owned_child_is_garbage_collected_after_its_owner_is_deleted() {
    let testbed = Testbed::connect().await;
    testbed.require_tier_b().await;
    let ns = TestNamespace::create(&testbed, "gc").await;
    let maps: Api<ConfigMap> = ns.api();

    let config_map = |name: &str, owner: Option<OwnerReference>| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        ..ConfigMap::default()
    };
    let owner = maps
        .create(&PostParams::default(), &config_map("owner", None))
        .await
        .expect("owner");
    let owner_ref = owner
        .controller_owner_ref(&())
        .expect("created objects have name and uid");
    let child = maps
        .create(
            &PostParams::default(),
            &config_map("child", Some(owner_ref)),
        )
        .await
        .expect("child");
    // An unrelated object next to it must survive, or the test would pass for a wiped namespace.
    maps.create(&PostParams::default(), &config_map("bystander", None))
        .await
        .expect("bystander");

    maps.delete("owner", &DeleteParams::background())
        .await
        .expect("deleting the owner");
    let child_uid = child.uid().expect("created objects have a uid");
    wait_for(
        maps.clone(),
        "child",
        "garbage collection of the child",
        conditions::is_deleted(&child_uid),
    )
    .await;
    assert!(
        maps.get_opt("bystander")
            .await
            .expect("get bystander")
            .is_some()
    );

    ns.delete().await;
}

/// A one-container pause pod named `name` (kwok never pulls the image).
fn pause_pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[tokio::test]
async fn pod_is_scheduled_on_a_kwok_node_and_runs() {
    let testbed = Testbed::connect().await;
    let kwok_node = testbed.require_tier_b().await;
    let ns = TestNamespace::create(&testbed, "pod").await;
    ns.wait_for_default_service_account().await;
    let pods: Api<Pod> = ns.api();

    // No nodeName: the scheduler must place it. kwok never pulls the image.
    let mut pod = pause_pod("p");
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_selector = Some(BTreeMap::from([("type".to_owned(), "kwok".to_owned())]));
    }
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating the pod");
    let running = wait_for(
        pods.clone(),
        "p",
        "the pod to be Running",
        conditions::is_pod_running(),
    )
    .await
    .expect("a Running pod exists");
    let spec = running.spec.expect("pods have a spec");
    assert_eq!(spec.node_name.as_deref(), Some(kwok_node.as_str()));
    // kwok hands out pod IPs from the node's podCIDR (testbed/lib/common.sh KWOK_NODE_POD_CIDR),
    // which the egress guard keeps off eth0.
    let ip = running
        .status
        .and_then(|s| s.pod_ip)
        .expect("a Running pod has an IP");
    assert!(
        ip.starts_with("10.244.0."),
        "pod IP {ip} outside the kwok node's podCIDR"
    );

    ns.delete().await;
}

#[tokio::test]
async fn namespace_deletion_completes() {
    let testbed = Testbed::connect().await;
    let kwok_node = testbed.require_tier_b().await;
    let ns = TestNamespace::create(&testbed, "nsdel").await;
    ns.wait_for_default_service_account().await;

    // Content that the namespace controller must remove first, including a pod whose graceful
    // deletion only completes when its (kwok) kubelet confirms it.
    let maps: Api<ConfigMap> = ns.api();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cm".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    maps.create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let pods: Api<Pod> = ns.api();
    let mut pod = pause_pod("p");
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(kwok_node);
    }
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    wait_for(
        pods,
        "p",
        "the pod to be Running",
        conditions::is_pod_running(),
    )
    .await;

    let name = ns.name.clone();
    let uid = ns.delete().await;
    let namespaces: Api<Namespace> = Api::all(testbed.client.clone());
    wait_for(
        namespaces,
        &name,
        "the namespace deletion to complete",
        conditions::is_deleted(&uid),
    )
    .await;
}

#[tokio::test]
async fn widget_crd_schema_is_structural() {
    // Guards the test CRD itself: the API server rejects non-structural schemas at apply time,
    // and a served CRD must expose both the status subresource and the schema's fields.
    let testbed = Testbed::connect().await;
    let served = install_widget_crd(&testbed).await;
    let version = &served.spec.versions[0];
    assert!(version.served && version.storage);
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    // `install_crd` already failed the test if the schema were not structural.
}
