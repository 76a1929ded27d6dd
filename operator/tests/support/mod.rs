//! Support for integration tests that run against the project's offline Kubernetes testbed
//! (`testbed/README.md`): a kube client built from the testbed's kubeconfig, one fresh namespace
//! per test with cleanup, and bounded waits.
//!
//! The testbed is a hard requirement, not an optional extra: when `KUBECONFIG` is unset or its
//! API server does not answer, [`Testbed::connect`] panics with a message that says how to start
//! the testbed (`testbed/up`), so the test fails instead of being skipped.

// Each integration test binary compiles this module on its own and uses a different subset.
#![allow(dead_code, unreachable_pub)]

use std::{
    ffi::OsString,
    fmt::Debug,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use k8s_openapi::{
    api::core::v1::{Namespace, Node, ServiceAccount},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, Resource, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{Condition, await_condition, conditions},
};
use serde::de::DeserializeOwned;

/// How to start the testbed; every "testbed missing" message ends with this.
pub const START_HINT: &str = "start the testbed with `eval \"$(testbed/up --tier b)\"` (after \
     `testbed/build`), or run the tests through `testbed/with-testbed --tier b -- cargo test ...`";

/// Label put on every namespace made by [`TestNamespace`], so leftovers are easy to find.
pub const TEST_NAMESPACE_LABEL: &str = "byzsgd.test/testbed";

/// Annotation that marks the nodes simulated by kwok (tier b of the testbed).
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Upper bound for any wait on the testbed; generous because the machines are 2 shared cores.
pub const WAIT: Duration = Duration::from_secs(90);

/// Why the testbed could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// `KUBECONFIG` is not set.
    #[error("KUBECONFIG is not set, so there is no testbed to test against: {START_HINT}")]
    NoKubeconfig,
    /// The kubeconfig file could not be read or parsed.
    #[error("cannot read the kubeconfig {path} named by KUBECONFIG ({source}): {START_HINT}")]
    BadKubeconfig {
        /// Path from `KUBECONFIG`.
        path: PathBuf,
        /// What went wrong.
        source: kube::config::KubeconfigError,
    },
    /// The API server named in the kubeconfig did not answer.
    #[error(
        "the API server of {path} did not answer ({source}); is the testbed running? {START_HINT}"
    )]
    Unreachable {
        /// Path from `KUBECONFIG`.
        path: PathBuf,
        /// What went wrong.
        source: kube::Error,
    },
}

/// A connection to the running testbed.
#[derive(Clone)]
pub struct Testbed {
    /// Client authenticated as the testbed admin (`system:masters`).
    pub client: Client,
    /// Kubeconfig the client was built from.
    pub kubeconfig: PathBuf,
}

impl Testbed {
    /// Connects to the testbed named by `KUBECONFIG`, panicking with [`START_HINT`] if it is
    /// absent or not answering.
    pub async fn connect() -> Self {
        match Self::try_connect(std::env::var_os("KUBECONFIG")).await {
            Ok(testbed) => testbed,
            Err(err) => panic!("{err}"),
        }
    }

    /// Connects to the testbed whose kubeconfig path is `kubeconfig` (the value of `KUBECONFIG`),
    /// and checks that its API server answers.
    pub async fn try_connect(kubeconfig: Option<OsString>) -> Result<Self, TestbedError> {
        // Only the first entry of a KUBECONFIG list matters: testbed/up exports a single file.
        let path = kubeconfig
            .filter(|v| !v.is_empty())
            .and_then(|v| std::env::split_paths(&v).next())
            .ok_or(TestbedError::NoKubeconfig)?;
        let bad = |source| TestbedError::BadKubeconfig {
            path: path.clone(),
            source,
        };
        let parsed = Kubeconfig::read_from(&path).map_err(bad)?;
        let config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
            .await
            .map_err(bad)?;
        let client = Client::try_from(config).map_err(|source| TestbedError::Unreachable {
            path: path.clone(),
            source,
        })?;
        client
            .apiserver_version()
            .await
            .map_err(|source| TestbedError::Unreachable {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            client,
            kubeconfig: path,
        })
    }

    /// Asserts that the testbed runs tier b (controllers, scheduler and a Ready kwok node) and
    /// returns the kwok node's name; panics naming `testbed/up --tier b` otherwise, because a
    /// test that needs garbage collection or scheduling would otherwise just time out.
    pub async fn require_tier_b(&self) -> String {
        let hint = "this test needs tier b of the testbed (kube-controller-manager, \
                    kube-scheduler, kwok): run `testbed/up --tier b`";
        // The 'default' ServiceAccount is made by kube-controller-manager; tier a has none.
        let sa: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "default");
        let has_kcm = sa
            .get_opt("default")
            .await
            .expect("listing service accounts")
            .is_some();
        assert!(
            has_kcm,
            "no kube-controller-manager (no default ServiceAccount): {hint}"
        );
        let nodes: Api<Node> = Api::all(self.client.clone());
        let ready = nodes
            .list(&ListParams::default())
            .await
            .expect("listing nodes")
            .items
            .into_iter()
            .find(|n| is_kwok_node(n) && node_is_ready(n));
        match ready {
            Some(node) => node.metadata.name.expect("nodes have names"),
            None => panic!("no Ready kwok node: {hint}"),
        }
    }
}

/// True if kwok simulates `node`.
pub fn is_kwok_node(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.get(KWOK_NODE_ANNOTATION).is_some_and(|v| v == "fake"))
}

/// True if `node` reports the Ready condition as True.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Makes a DNS-1123 name that no other test (or earlier run) uses: `<prefix>-<pid>-<time>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 1_000_000_000);
    let mut name = format!("{prefix}-{}-{millis}-{n}", std::process::id()).to_lowercase();
    name.truncate(63);
    name
}

/// A namespace created for one test. Call [`TestNamespace::delete`] at the end of the test to
/// remove it (and check that the deletion completes, on tier b); if the test panics first, `Drop`
/// still asks the API server to delete it.
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    client: Client,
    kubeconfig: PathBuf,
    deleted: bool,
}

impl TestNamespace {
    /// Creates a fresh namespace named after `prefix` (a test name).
    pub async fn create(testbed: &Testbed, prefix: &str) -> Self {
        let name = unique_name(prefix);
        let api: Api<Namespace> = Api::all(testbed.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        Self {
            name,
            client: testbed.client.clone(),
            kubeconfig: testbed.kubeconfig.clone(),
            deleted: false,
        }
    }

    /// An API handle for namespaced resources of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Waits until kube-controller-manager has made this namespace's `default` ServiceAccount;
    /// the ServiceAccount admission plugin rejects pods until then (tier b only).
    pub async fn wait_for_default_service_account(&self) {
        let sa = self.api::<ServiceAccount>();
        wait_for(
            sa,
            "default",
            "the default ServiceAccount",
            conditions::is_created(),
        )
        .await;
    }

    /// Deletes the namespace and returns its UID, without waiting for the deletion to finish.
    pub async fn delete(mut self) -> String {
        self.deleted = true;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let uid = api
            .get(&self.name)
            .await
            .unwrap_or_else(|e| panic!("reading namespace {}: {e}", self.name))
            .metadata
            .uid
            .expect("namespaces have a uid");
        api.delete(&self.name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting namespace {}: {e}", self.name));
        uid
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // The test's runtime may be unwinding and its client is tied to that runtime, so delete
        // from a separate thread with its own runtime and client. Best effort: `testbed/down`
        // wipes everything anyway.
        let (name, kubeconfig) = (self.name.clone(), self.kubeconfig.clone());
        let result =
            std::thread::spawn(move || delete_namespace_blocking(&name, &kubeconfig)).join();
        if let Ok(Err(e)) = result {
            eprintln!(
                "warning: could not delete test namespace {}: {e}",
                self.name
            );
        }
    }
}

fn delete_namespace_blocking(name: &str, kubeconfig: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let testbed = Testbed::try_connect(Some(kubeconfig.as_os_str().to_owned()))
            .await
            .map_err(|e| e.to_string())?;
        let api: Api<Namespace> = Api::all(testbed.client);
        api.delete(name, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// Waits up to [`WAIT`] until object `name` of `api` satisfies `condition` (which also sees
/// `None` while the object does not exist), and returns the object at that moment. Panics with
/// `what` and the last seen object on timeout.
pub async fn wait_for<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    condition: impl Condition<K>,
) -> Option<K>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    match tokio::time::timeout(WAIT, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => panic!("watching {}/{name} for {what}: {e}", api.resource_url()),
        Err(_) => {
            let last = api.get_opt(name).await;
            let url = api.resource_url();
            panic!(
                "timed out after {WAIT:?} waiting for {what} ({url}/{name}); last seen: {last:#?}"
            )
        }
    }
}

/// Applies `crd` with server-side apply as `manager` (idempotent, so concurrent tests may all do
/// it), waits until the API server serves it, and fails if the API server found its schema not
/// structural. Returns the served CRD.
pub async fn install_crd(
    testbed: &Testbed,
    crd: &CustomResourceDefinition,
    manager: &str,
) -> CustomResourceDefinition {
    let crds: Api<CustomResourceDefinition> = Api::all(testbed.client.clone());
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|error| panic!("applying the CRD {name}: {error}"));
    let served = wait_for(
        crds,
        &name,
        "the CRD to be Established",
        conditions::is_crd_established(),
    )
    .await
    .unwrap_or_else(|| panic!("the CRD {name} exists"));
    let structural = served
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "NonStructuralSchema"));
    assert!(
        structural.is_none(),
        "the schema of {name} is not structural: {structural:?}"
    );
    served
}
