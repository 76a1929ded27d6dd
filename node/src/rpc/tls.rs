//! Mutual TLS on peer links: the node's credentials, the acceptor in front of the gRPC server
//! and the client configuration of each outgoing link.
//!
//! The node drives the TLS handshake itself (tokio-rustls) rather than handing a config to
//! tonic, so that every refused handshake — no certificate, another CA's, expired, too slow —
//! is counted (`byzsgd_rejected_total{reason="unauthenticated"}`) and logged with the peer's
//! address. Both sides check the chain against the job's CA only; who the peer is, is read from
//! its certificate afterwards ([`super::identity::CertificateIdentity`]). A client names the
//! server it wants by its node name, so a worker cannot be fooled into sending its gradient to
//! a node holding another identity's address.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use byzsgd_api::{
    identity::{CA_FILE, CERT_FILE, KEY_FILE},
    pki::NodeCredentials,
};
use byzsgd_core::protocol::Rejection;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::metrics::Metrics;

/// How long a connecting peer may take to finish its handshake: a peer that opens connections
/// and never completes them must not hold this node's sockets.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the gRPC server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// The node's credentials, checked: the CA, its certificate chain and its key.
#[derive(Clone)]
pub struct Tls {
    credentials: NodeCredentials,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Checks `credentials` (each PEM parses, the key matches the certificate) and builds the
    /// server side.
    pub fn new(credentials: NodeCredentials) -> anyhow::Result<Self> {
        let roots = roots(&credentials.ca)?;
        let chain = certificates(&credentials.cert, CERT_FILE)?;
        let key = PrivateKeyDer::from_pem_slice(credentials.key.as_bytes())
            .with_context(|| format!("{KEY_FILE}: not a PEM private key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .context("the client certificate verifier")?;
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .with_context(|| format!("{CERT_FILE} and {KEY_FILE} do not form a usable identity"))?;
        let mut server = server;
        // gRPC is HTTP/2 only.
        server.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            credentials,
            server: Arc::new(server),
        })
    }

    /// Reads [`CA_FILE`], [`CERT_FILE`] and [`KEY_FILE`] from `dir` (the operator mounts the
    /// node's Secret there).
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read {} (--tls-dir must hold {CA_FILE}, {CERT_FILE} and {KEY_FILE})",
                    path.display()
                )
            })
        };
        let credentials = NodeCredentials {
            ca: read(CA_FILE)?,
            cert: read(CERT_FILE)?,
            key: read(KEY_FILE)?,
        };
        Self::new(credentials).with_context(|| format!("the credentials in {}", dir.display()))
    }

    /// Fails unless the certificate names `node` (`<job>-<role>-<index>`): a pod that mounted
    /// another node's Secret, or a runner that mixed up its children, is told so at start
    /// instead of being refused by every peer.
    pub fn ensure_names(&self, node: &str) -> anyhow::Result<()> {
        let chain = certificates(&self.credentials.cert, CERT_FILE)?;
        let leaf = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|error| anyhow::anyhow!("{CERT_FILE}: {error}"))?;
        let name = ServerName::try_from(node.to_owned())
            .with_context(|| format!("`{node}` is not a DNS name"))?;
        leaf.verify_is_valid_for_subject_name(&name).map_err(|_| {
            anyhow::anyhow!(
                "{CERT_FILE} is not the certificate of {node}: its DNS name must be `{node}` \
                 (each node needs its own Secret, {node}-tls)"
            )
        })
    }

    /// The client side of a link to the node whose name (certificate DNS name) is `peer_name`.
    pub fn client_config(&self, peer_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.credentials.ca))
            .identity(Identity::from_pem(
                &self.credentials.cert,
                &self.credentials.key,
            ))
            .domain_name(peer_name)
    }

    /// Accepts TCP connections on `listener`, completes the TLS handshake of each on its own
    /// task and yields the connections that presented a certificate of the job's CA. Refusals
    /// are counted and logged with the peer's address. Ends when `listener` fails for good or
    /// the receiver is dropped.
    pub fn accept(
        &self,
        listener: TcpListener,
        metrics: Metrics,
    ) -> mpsc::Receiver<Result<TlsStream<tokio::net::TcpStream>, std::io::Error>> {
        let (accepted, receiver) = mpsc::channel(ACCEPTED_QUEUE);
        let acceptor = TlsAcceptor::from(self.server.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, remote) = tokio::select! {
                    connection = listener.accept() => match connection {
                        Ok(connection) => connection,
                        Err(error) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!(%error, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = accepted.closed() => return,
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, accepted, metrics) =
                    (acceptor.clone(), accepted.clone(), metrics.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = accepted.send(Ok(stream)).await;
                        }
                        Ok(Err(error)) => {
                            metrics.rejected(&remote, Rejection::Unauthenticated);
                            tracing::warn!(peer = %remote, %error, "refused a connection: TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.rejected(&remote, Rejection::Unauthenticated);
                            tracing::warn!(peer = %remote, timeout_s = HANDSHAKE_TIMEOUT.as_secs(), "refused a connection: no TLS handshake in time");
                        }
                    }
                });
            }
        });
        receiver
    }
}

fn certificates(pem: &str, file: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{file}: not PEM certificates"))?;
    if certificates.is_empty() {
        bail!("{file}: no certificate in it");
    }
    Ok(certificates)
}

fn roots(ca_pem: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(ca_pem, CA_FILE)? {
        roots
            .add(certificate)
            .with_context(|| format!("{CA_FILE}: not a CA certificate"))?;
    }
    Ok(roots)
}
