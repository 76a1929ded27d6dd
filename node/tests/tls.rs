//! Identities on the wire: a real server node (runtime, gRPC, admin port) on loopback behind
//! mutual TLS, and test clients — each a real TLS handshake — that present no certificate,
//! another job's, an expired one, a certificate of one worker while claiming another, or one
//! certificate on many streams (a Sybil). Every refusal must be counted in `/metrics` by
//! reason, and one certificate must never fill two quorum slots.

// Helpers unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]
// Prometheus counters are floats holding whole numbers: compared exactly on purpose.
#![allow(clippy::float_cmp)]

mod common;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use byzsgd_api::{
    Manifest,
    identity::node_name,
    pki::{JobCa, NodeCredentials},
    validate,
};
use byzsgd_core::{
    assemble::{Assembly, JobData},
    protocol::{NodeId, Payload},
};
use byzsgd_node::{
    rpc::{
        Transport,
        identity::NODE_HEADER,
        proto::{Envelope, node_client::NodeClient},
        tls::Tls,
        wire,
    },
    runtime,
    state::RuntimeOptions,
};
use common::rejected;
use ndarray::Array1;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const JOB: &str = "tls-test";

/// One server, four workers of which one may be Byzantine: a step needs q_w = 3 gradients.
fn manifest() -> String {
    format!(
        "
apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {{name: {JOB}}}
spec:
  model: {{kind: logistic}}
  dataset: {{name: synthetic}}
  training: {{steps: 1000, batchSize: 8, learningRate: 0.05, seed: 1}}
  servers: {{replicas: 1}}
  workers: {{replicas: 4, byzantine: 1}}
"
    )
}

/// The server node, running; the test plays its workers.
struct Server {
    grpc: String,
    admin: String,
    dimension: usize,
    ca: JobCa,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        let manifest = Manifest::parse(&manifest(), "<test>").unwrap();
        let plan = validate(&manifest.spec).unwrap();
        let assembly = Assembly::new(plan.clone(), JobData::load(&plan).unwrap()).unwrap();
        let dimension = assembly.config().dimension;
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_address = grpc.local_addr().unwrap().to_string();
        let admin_address = format!("http://{}", admin.local_addr().unwrap());
        // The workers' addresses lead nowhere: the server's models to them are lost, which is
        // what an asynchronous network may do; the test sends the gradients itself.
        let mut peers = BTreeMap::from([(NodeId::server(0), grpc_address.clone())]);
        for index in 0..plan.workers {
            peers.insert(NodeId::worker(index), "127.0.0.1:9".to_owned());
        }
        let ca = JobCa::generate(JOB).unwrap();
        let options = RuntimeOptions {
            job: JOB.to_owned(),
            me: NodeId::server(0),
            dimension,
            peers,
            transport: Transport::MutualTls(
                Tls::new(ca.issue(NodeId::server(0)).unwrap()).unwrap(),
            ),
            attack: None,
            snapshot_every: 1000,
            linger: Duration::from_millis(100),
            progress_lines: false,
            quorums: (plan.server_quorum, plan.worker_quorum),
            chaos: None,
            chaos_token: None,
            checkpoints: None,
        };
        let node = assembly.node(NodeId::server(0).role, 0).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            runtime::run(node, options, grpc, admin, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let server = Self {
            grpc: grpc_address,
            admin: admin_address,
            dimension,
            ca,
            stop: Some(stop),
            task,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(response) = reqwest::get(format!("{}/readyz", self.admin)).await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server never turned ready");
    }

    /// The server's step, from its `/status`.
    async fn step(&self) -> u64 {
        common::step(&self.admin).await
    }

    /// `byzsgd_rejected_total{reason}` once it reached `expected` (or after 5 s): the server
    /// counts a refused handshake on its own task, possibly after the client saw the refusal.
    async fn rejected(&self, reason: &str, expected: f64) -> f64 {
        let mut value = 0.0;
        for _ in 0..100 {
            value = rejected(&self.admin, reason).await;
            if value >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        value
    }

    /// A gradient for `step` (zeros: its value does not matter here).
    fn gradient(&self, step: u64) -> Envelope {
        wire::encode(
            JOB,
            &Payload::Gradient {
                step,
                gradient: Arc::new(Array1::zeros(self.dimension)),
                loss: 0.5,
            },
        )
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A client: its TLS configuration (None: plaintext) and the name it claims, if any.
struct Client {
    tls: Option<ClientTlsConfig>,
    claims: Option<String>,
}

impl Client {
    /// Presents `credentials` (or no certificate when None) and trusts `ca_pem`.
    fn presenting(ca_pem: &str, credentials: Option<&NodeCredentials>) -> Self {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name(node_name(JOB, NodeId::server(0)));
        if let Some(credentials) = credentials {
            tls = tls.identity(Identity::from_pem(&credentials.cert, &credentials.key));
        }
        Self {
            tls: Some(tls),
            claims: None,
        }
    }

    fn claiming(mut self, name: &str) -> Self {
        self.claims = Some(name.to_owned());
        self
    }

    /// Opens a stream to `server`, sends `envelopes`, closes it: Ok with the number of
    /// messages the server accepted, or Err with what refused the stream.
    async fn deliver(&self, server: &str, envelopes: Vec<Envelope>) -> Result<u64, String> {
        self.deliver_stream(server, tokio_stream::iter(envelopes))
            .await
    }

    /// [`Client::deliver`] of whatever `envelopes` yields, until it ends.
    async fn deliver_stream(
        &self,
        server: &str,
        envelopes: impl tokio_stream::Stream<Item = Envelope> + Send + 'static,
    ) -> Result<u64, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{server}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).unwrap();
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| format!("connect: {error:?}"))?;
        let mut request = tonic::Request::new(envelopes);
        if let Some(name) = &self.claims {
            request
                .metadata_mut()
                .insert(NODE_HEADER, name.parse().unwrap());
        }
        NodeClient::new(channel)
            .deliver(request)
            .await
            .map(|response| response.into_inner().accepted)
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_certificates_of_the_jobs_ca_that_are_valid_now_get_in() {
    let server = Server::start().await;
    let ca_pem = server.ca.cert_pem().to_owned();
    let worker = server.ca.issue(NodeId::worker(0)).unwrap();
    let gradient = || vec![server.gradient(0)];

    // Control: the node's own credentials get in.
    let accepted = Client::presenting(&ca_pem, Some(&worker))
        .claiming("worker-0")
        .deliver(&server.grpc, gradient())
        .await;
    assert_eq!(accepted, Ok(1), "a certified worker's gradient is accepted");
    assert_eq!(server.rejected("unauthenticated", 0.0).await, 0.0);

    let other_ca = JobCa::generate(JOB).unwrap();
    let day = Duration::from_secs(24 * 3600);
    let now = SystemTime::now();
    let cases = [
        ("no certificate", Client::presenting(&ca_pem, None)),
        (
            // The very same node name, from another job's CA.
            "another CA's certificate",
            Client::presenting(&ca_pem, Some(&other_ca.issue(NodeId::worker(1)).unwrap()))
                .claiming("worker-1"),
        ),
        (
            "a certificate that expired yesterday",
            Client::presenting(
                &ca_pem,
                Some(
                    &server
                        .ca
                        .issue_valid(NodeId::worker(2), now - 2 * day, now - day)
                        .unwrap(),
                ),
            )
            .claiming("worker-2"),
        ),
        (
            "plaintext",
            Client {
                tls: None,
                claims: Some("worker-3".to_owned()),
            },
        ),
        (
            // The job's CA, but a name outside the job (another job's node): the handshake
            // passes, the stream is refused.
            "a certificate naming no node of the job",
            Client::presenting(
                &ca_pem,
                Some(
                    &server
                        .ca
                        .issue_named("other-job-worker-3", now - day, now + day)
                        .unwrap(),
                ),
            ),
        ),
    ];
    for (case, client) in cases {
        let before = rejected(&server.admin, "unauthenticated").await;
        let refused = client.deliver(&server.grpc, gradient()).await;
        assert!(refused.is_err(), "{case}: {refused:?}");
        // Counted (a client may dial more than once, each refusal counts).
        let after = server.rejected("unauthenticated", before + 1.0).await;
        assert!(after > before, "{case} was not counted as unauthenticated");
    }
    assert_eq!(
        server.step().await,
        0,
        "no refused gradient reached the protocol"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_one_worker_cannot_claim_another_nor_fill_two_quorum_slots() {
    let server = Server::start().await;
    let ca_pem = server.ca.cert_pem().to_owned();
    let byzantine = server.ca.issue(NodeId::worker(3)).unwrap();

    // worker-3's certificate claiming to be worker-4 (and worker-0): refused and counted.
    for claimed in ["worker-0", "server-0", "worker-4"] {
        let refused = Client::presenting(&ca_pem, Some(&byzantine))
            .claiming(claimed)
            .deliver(&server.grpc, vec![server.gradient(0)])
            .await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("PermissionDenied")),
            "claiming {claimed}: {refused:?}"
        );
    }
    assert_eq!(server.rejected("impersonation", 3.0).await, 3.0);

    // The Sybil: one certificate, many streams, the same step's gradient on each (and no
    // claim at all, so the server must go by the certificate). A step needs q_w = 3 distinct
    // workers; however many streams worker-3 opens, it is one.
    let sybil = Client::presenting(&ca_pem, Some(&byzantine));
    for _ in 0..4 {
        let _ = sybil.deliver(&server.grpc, vec![server.gradient(0)]).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.step().await,
        0,
        "one certificate alone never makes a quorum"
    );
    assert_eq!(
        server.rejected("duplicate", 3.0).await,
        3.0,
        "every stream after the first is the same sender's duplicate"
    );

    // Two more distinct, certified workers complete the quorum.
    for index in [0, 1] {
        let credentials = server.ca.issue(NodeId::worker(index)).unwrap();
        let accepted = Client::presenting(&ca_pem, Some(&credentials))
            .deliver(&server.grpc, vec![server.gradient(0)])
            .await;
        assert_eq!(accepted, Ok(1), "worker-{index}");
    }
    let mut step = 0;
    for _ in 0..100 {
        step = server.step().await;
        if step > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(step, 1, "three distinct workers make the quorum of step 0");
    server.stop().await;
}

/// Issue 15, bounded under a flood: worker-3 sends well-formed, model-sized gradients for
/// steps the server will never reach, as fast as its link takes them, while three correct
/// workers make the server step. The flood is queued per sender (`rpc::inbox`), so it
/// neither starves the correct workers nor grows without bound; every flooded message is
/// counted as `future`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_worker_does_not_keep_the_others_from_making_steps() {
    let server = Server::start().await;
    let ca_pem = server.ca.cert_pem().to_owned();
    let flooder = Client::presenting(&ca_pem, Some(&server.ca.issue(NodeId::worker(3)).unwrap()));
    let (feed, flood) = tokio::sync::mpsc::channel::<Envelope>(1);
    let grpc = server.grpc.clone();
    let flooding = tokio::spawn(async move {
        flooder
            .deliver_stream(&grpc, tokio_stream::wrappers::ReceiverStream::new(flood))
            .await
    });
    let template = server.gradient(0);
    let feeding = tokio::spawn(async move {
        for step in 1_000_000.. {
            let mut envelope = template.clone();
            envelope.step = step;
            if feed.send(envelope).await.is_err() {
                break;
            }
        }
    });
    // The flood is under way before the correct workers speak.
    assert!(
        server.rejected("future", 100.0).await >= 100.0,
        "the flood arrives"
    );
    for step in 0..3 {
        for index in [0, 1, 2] {
            let credentials = server.ca.issue(NodeId::worker(index)).unwrap();
            let accepted = Client::presenting(&ca_pem, Some(&credentials))
                .deliver(&server.grpc, vec![server.gradient(step)])
                .await;
            assert_eq!(accepted, Ok(1), "worker-{index}, step {step}");
        }
    }
    let mut step = 0;
    for _ in 0..250 {
        step = server.step().await;
        if step >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(step, 3, "three steps made under the flood");
    assert!(!flooding.is_finished(), "the flood was still going");
    let before = rejected(&server.admin, "future").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rejected(&server.admin, "future").await > before,
        "and still being read (held back, not cut off)"
    );
    feeding.abort();
    server.stop().await;
}

/// Issue 15: a stream that keeps failing the edge checks (here: vectors of the wrong
/// length) is read at most 64 messages a second fast and then one per 50 ms, so garbage
/// cannot buy unlimited decoding time. 200 such messages therefore take well over a second;
/// unthrottled they took milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_malformed_messages_is_read_slowly() {
    let server = Server::start().await;
    let ca_pem = server.ca.cert_pem().to_owned();
    let byzantine = server.ca.issue(NodeId::worker(3)).unwrap();
    let wrong_length = wire::encode(
        JOB,
        &Payload::Gradient {
            step: 0,
            gradient: Arc::new(Array1::zeros(server.dimension + 1)),
            loss: 0.5,
        },
    );
    let started = std::time::Instant::now();
    let accepted = Client::presenting(&ca_pem, Some(&byzantine))
        .deliver(&server.grpc, vec![wrong_length; 200])
        .await;
    let elapsed = started.elapsed();
    assert_eq!(accepted, Ok(0));
    assert_eq!(server.rejected("wrong_length", 200.0).await, 200.0);
    assert!(
        elapsed >= Duration::from_secs(1),
        "200 malformed messages were read in {elapsed:?}"
    );
    server.stop().await;
}
