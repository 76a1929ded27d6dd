//! The testbed's tier c as the end-to-end tests see it: where the repository, the build and the
//! image archives are; the user's tools (`kubectl`, `helm` from `testbed/build
//! --print-bin-dir`, the repository's scripts) run as processes, echoed like a shell
//! transcript; a kube client with its own runtime, so tests read as sequential steps; bounded
//! polling; plain HTTP to pods over the pod network; and the admin kubeconfig's client
//! certificate written out for Prometheus' Kubernetes discovery.
//!
//! Every missing piece (testbed, tool, image archive, release binary) panics with the command
//! that provides it: a test fails, it never skips.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, Config, Resource,
    api::{ListParams, ObjectList},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::de::DeserializeOwned;

use crate::monitors::ApiAccess;

/// The repository root (this crate sits in it).
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// How to run these tests; every "missing" message ends with it.
pub const HOW_TO_RUN: &str = "run them as scripts/test does: `scripts/images`, then \
    `testbed/with-testbed --tier c -- cargo test -p byzsgd-e2e --features tier-c -- --test-threads=1`";

/// The repository root as a path.
pub fn repo() -> PathBuf {
    PathBuf::from(REPO)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the repository, as cargo takes
/// it from the working directory the tests run in), else the one this test binary was built
/// into (`<target>/debug/deps/<test>`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return repo().join(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .expect("the test binary lives in <target>/<profile>/deps")
}

/// The workspace version, which tags the images.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where `scripts/images` writes (`$BYZSGD_IMAGES_DIR`, default `<target>/images`).
fn images_dir() -> PathBuf {
    std::env::var_os("BYZSGD_IMAGES_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| target_dir().join("images"), PathBuf::from)
}

/// The three image archives `scripts/images` writes (`$BYZSGD_IMAGES_DIR`, default
/// `<target>/images`).
pub fn image_archives() -> Vec<PathBuf> {
    let dir = images_dir();
    ["byzsgd-node", "byzsgd-operator", "byzsgd-data-fashion-mnist"]
        .into_iter()
        .map(|image| {
            let archive = dir.join(format!("{image}-{VERSION}.tar"));
            assert!(
                archive.is_file(),
                "{} is missing: build the images with `scripts/images` (same CARGO_TARGET_DIR); {HOW_TO_RUN}",
                archive.display()
            );
            archive
        })
        .collect()
}

/// The host copy of a binary the images hold: from the build `scripts/images` took it from
/// (`<images dir>/binaries-from`: `release`, or `debug` when the test command builds the images
/// from its test binaries; `release` if the file is missing).
pub fn image_binary(name: &str) -> PathBuf {
    let profile_dir = std::fs::read_to_string(images_dir().join("binaries-from"))
        .map_or_else(|_| "release".to_owned(), |dir| dir.trim().to_owned());
    let path = target_dir().join(profile_dir).join(name);
    assert!(
        path.is_file(),
        "{} is missing: `scripts/images` builds it; {HOW_TO_RUN}",
        path.display()
    );
    path
}

/// The testbed's bin dir (`testbed/build --print-bin-dir`), holding `kubectl` and `helm`.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let output = Command::new(repo().join("testbed/build"))
            .arg("--print-bin-dir")
            .output()
            .expect("running testbed/build --print-bin-dir");
        assert!(
            output.status.success(),
            "testbed/build --print-bin-dir failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        for tool in ["kubectl", "helm"] {
            assert!(
                dir.join(tool).is_file(),
                "{} is missing: build the testbed with `testbed/build`",
                dir.join(tool).display()
            );
        }
        dir
    })
}

/// A command line as a user types it: `kubectl …` and `helm …` resolve in the testbed's bin
/// dir, paths starting with `testbed/`, `scripts/` or `charts/` in the repository; it runs in
/// the repository root with the test's environment (`KUBECONFIG`).
pub fn command(words: &[&str]) -> Command {
    let (program, args) = words.split_first().expect("a command has a program");
    let path = match *program {
        "kubectl" | "helm" => bin_dir().join(program),
        p if p.contains('/') => repo().join(p),
        p => PathBuf::from(p),
    };
    let mut command = Command::new(path);
    command.args(args).current_dir(repo());
    command
}

/// Runs a user's command, echoing it (`$ …`) and its output to stderr like a terminal, and
/// returns its stdout; panics with both streams when it fails.
pub fn run(words: &[&str]) -> String {
    let output = run_output(words);
    assert!(
        output.status.success(),
        "`{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
        words.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Like [`run`] but returns the output whatever the exit status.
pub fn run_output(words: &[&str]) -> Output {
    eprintln!("$ {}", words.join(" "));
    let output = command(words)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting `{}`: {e}", words.join(" ")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        eprintln!("  {line}");
    }
    output
}

/// Runs a command without echoing it (the test's own look-ups) and returns its stdout; panics
/// when it fails.
pub fn quiet(words: &[&str]) -> String {
    let output = command(words)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting `{}`: {e}", words.join(" ")));
    assert!(
        output.status.success(),
        "`{}` failed ({}): {}",
        words.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `probe` every `every` until it returns `Some`, for at most `timeout`; panics naming
/// `what` and the last state `probe` described through `last` otherwise.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Some(value) = probe(&mut last) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen:\n{last}"
        );
        std::thread::sleep(every);
    }
}

/// The cluster named by `KUBECONFIG`, with a runtime for its client.
pub struct Cluster {
    /// A client with the admin kubeconfig's identity.
    pub client: Client,
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    /// Connects to the testbed named by `KUBECONFIG` and checks it is tier c: a `Ready` node
    /// that kwok does not simulate, so pods run real containers.
    pub fn connect() -> Self {
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .filter(|v| !v.is_empty())
            .map_or_else(
                || panic!("KUBECONFIG is not set: no testbed; {HOW_TO_RUN}"),
                PathBuf::from,
            );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = runtime.block_on(async {
            let parsed = Kubeconfig::read_from(&kubeconfig)
                .unwrap_or_else(|e| panic!("reading {}: {e}", kubeconfig.display()));
            let config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
            let client = Client::try_from(config).expect("a kube client");
            client.apiserver_version().await.unwrap_or_else(|e| {
                panic!(
                    "the API server of {} does not answer ({e}); {HOW_TO_RUN}",
                    kubeconfig.display()
                )
            });
            client
        });
        let cluster = Self {
            client,
            kubeconfig,
            runtime,
        };
        let nodes: Vec<Node> = cluster.list_all(&ListParams::default());
        let real = nodes.iter().any(|node| {
            let kwok = node
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kwok.x-k8s.io/node"));
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            ready && !kwok
        });
        assert!(
            real,
            "no Ready real node: these tests need tier c of the testbed (a kubelet and \
             containerd), not kwok; {HOW_TO_RUN}"
        );
        cluster
    }

    /// Runs a future on the cluster's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A namespaced API of kind `K`.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Object `name` of kind `K` in `namespace`, if it exists.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        self.block_on(self.api::<K>(namespace).get_opt(name))
            .unwrap_or_else(|e| panic!("reading {namespace}/{name}: {e}"))
    }

    /// The objects of kind `K` in `namespace` matching `params`.
    pub fn list<K>(&self, namespace: &str, params: &ListParams) -> Vec<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let list: ObjectList<K> = self
            .block_on(self.api::<K>(namespace).list(params))
            .unwrap_or_else(|e| panic!("listing in {namespace}: {e}"));
        list.items
    }

    /// The cluster-scoped objects of kind `K` matching `params`.
    pub fn list_all<K>(&self, params: &ListParams) -> Vec<K>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        self.block_on(api.list(params))
            .unwrap_or_else(|e| panic!("listing: {e}"))
            .items
    }

    /// Writes the kubeconfig's CA and client certificate into `dir` and says how Prometheus'
    /// Kubernetes discovery reaches the API server with them.
    pub fn api_access(&self, dir: &Path) -> ApiAccess {
        let text = std::fs::read_to_string(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.kubeconfig.display()));
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", self.kubeconfig.display()));
        let cluster = &config["clusters"][0]["cluster"];
        let user = &config["users"][0]["user"];
        let write = |name: &str, data: &serde_yaml_ng::Value, file: &serde_yaml_ng::Value| {
            if let Some(path) = file.as_str() {
                return path.to_owned();
            }
            let encoded = data
                .as_str()
                .unwrap_or_else(|| panic!("{}: no {name}", self.kubeconfig.display()));
            let bytes = decode_base64(encoded)
                .unwrap_or_else(|| panic!("{}: {name} is not base64", self.kubeconfig.display()));
            let path = dir.join(name);
            std::fs::write(&path, bytes)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            path.display().to_string()
        };
        ApiAccess {
            server: cluster["server"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no server", self.kubeconfig.display()))
                .to_owned(),
            ca_file: write(
                "ca.crt",
                &cluster["certificate-authority-data"],
                &cluster["certificate-authority"],
            ),
            cert_file: write(
                "client.crt",
                &user["client-certificate-data"],
                &user["client-certificate"],
            ),
            key_file: write("client.key", &user["client-key-data"], &user["client-key"]),
        }
    }
}

/// A namespace made for one test: `<prefix>-<pid>-<n>`, deleted on drop (without waiting; the
/// testbed goes down after the tests anyway).
pub struct TestNamespace {
    /// Its name.
    pub name: String,
}

impl TestNamespace {
    /// Creates it with `kubectl create namespace`.
    pub fn create(prefix: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run(&["kubectl", "create", "namespace", &name]);
        Self { name }
    }
}

impl TestNamespace {
    /// Deletes the namespace's ByzantineChaos experiments and ByzSGDJobs and waits until
    /// they are gone: their finalizers need the operator, so this comes before `helm
    /// uninstall` (or the namespace would hang in Terminating).
    pub fn delete_workloads(&self) {
        run(&[
            "kubectl",
            "delete",
            "byzantinechaos,byzsgdjobs",
            "--all",
            "--namespace",
            &self.name,
            "--wait=true",
            "--timeout=120s",
        ]);
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            diagnose(&self.name);
        }
        let _ = run_output(&["kubectl", "delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// Prints [`diagnose`] of each namespace when dropped during a panic (a failing test).
pub struct DiagnoseOnPanic(pub Vec<String>);

impl Drop for DiagnoseOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for namespace in &self.0 {
                diagnose(namespace);
            }
        }
    }
}

/// Prints what a failing test's namespace holds: the jobs' and experiments' status, pods,
/// events, and the last log lines of the operator and of every node.
pub fn diagnose(namespace: &str) {
    eprintln!("---- diagnostics of namespace {namespace} ----");
    for words in [
        &[
            "kubectl",
            "get",
            "byzsgdjobs,byzantinechaos",
            "-o",
            "yaml",
            "-n",
            namespace,
        ][..],
        &[
            "kubectl",
            "get",
            "pods,services,configmaps,secrets",
            "-o",
            "wide",
            "-n",
            namespace,
        ],
        &[
            "kubectl",
            "get",
            "events",
            "--sort-by=.lastTimestamp",
            "-n",
            namespace,
        ],
        &[
            "kubectl",
            "logs",
            "-l",
            "app.kubernetes.io/name=byzsgd-operator",
            "--tail=60",
            "--all-containers",
            "-n",
            namespace,
        ],
        // Every server's and worker's last lines, prefixed with its pod.
        &[
            "kubectl",
            "logs",
            "-l",
            "byzsgd.io/job",
            "--tail=15",
            "--prefix",
            "--max-log-requests=30",
            "-n",
            namespace,
        ],
    ] {
        let _ = run_output(words);
    }
    // Where each node is: its own `/status` (step, finished, what chaos it runs), one line each.
    let pods = command(&[
        "kubectl",
        "get",
        "pods",
        "-l",
        "byzsgd.io/job",
        "-n",
        namespace,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
    ])
    .stdin(Stdio::null())
    .output();
    let listed = pods.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for line in listed.unwrap_or_default().lines() {
        let Some((pod, ip)) = line.split_once(' ') else {
            continue;
        };
        let shown = match ip.parse::<std::net::IpAddr>() {
            Ok(_) => match http(admin_addr(ip), "GET", "/status", None, None) {
                Ok((_, body)) => body,
                Err(error) => format!("no answer: {error}"),
            },
            Err(_) => "no IP".to_owned(),
        };
        eprintln!("  /status of {pod}: {shown}");
    }
}

/// Standard base64 (with padding), as kubeconfigs carry certificates.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut bits = 0_u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= value(c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// One plain HTTP/1.1 request (`Connection: close`) to `addr` (a pod's IP and port, reachable
/// from the node over the pod bridge): status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        let _ = write!(request, "Authorization: Bearer {token}\r\n");
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    let _ = write!(request, "Content-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// Joins the chunks of a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A node's admin address, from its pod IP.
pub fn admin_addr(pod_ip: &str) -> SocketAddr {
    SocketAddr::new(
        pod_ip
            .parse()
            .unwrap_or_else(|e| panic!("pod IP {pod_ip}: {e}")),
        9090,
    )
}

/// A node's `/status` (the admin port's JSON), or `None` when it does not answer.
pub fn node_status(pod_ip: &str) -> Option<byzsgd_api::admin::Status> {
    let (status, body) = http(admin_addr(pod_ip), "GET", "/status", None, None).ok()?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_as_kubeconfigs_encode() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(decode_base64("aGk=\n").as_deref(), Some(&b"hi"[..]));
        assert!(decode_base64("a*b=").is_none());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"), "hello!");
    }

    #[test]
    fn user_commands_resolve_tools_and_repository_scripts() {
        let command = command(&["testbed/import-images", "x.tar"]);
        assert_eq!(
            Path::new(command.get_program()),
            repo().join("testbed/import-images")
        );
        assert_eq!(command.get_current_dir(), Some(repo().as_path()));
    }
}
