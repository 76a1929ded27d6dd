//! (Feature `pki`.) A job's certificate authority and the credentials it issues, one per node:
//! what makes a node's identity unforgeable (see [`crate::identity`]).
//!
//! The operator creates a [`JobCa`] per `ByzSGDJob`, keeps it in the job's CA Secret and issues
//! every node a certificate whose only DNS name is the node's name; `byzsgd-node local` does
//! the same in memory. Keys are ECDSA P-256 (fast handshakes, small Secrets). A CA is stored as
//! its certificate and key only: the parameters it was made with are rebuilt from the job's
//! name ([`JobCa::from_pem`]), so certificates issued after an operator restart chain to the
//! same root.

use std::time::{Duration, SystemTime};

use byzsgd_core::protocol::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use time::OffsetDateTime;

use crate::identity::node_name;

/// How long a CA is valid: longer than any job runs.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node certificate is valid. A job running longer gets new certificates from the
/// operator when its pods are recreated.
pub const NODE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates are valid from this long before they were made: clocks of nodes differ.
pub const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// A failure to make or read a certificate or key.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct PkiError {
    what: String,
    #[source]
    source: rcgen::Error,
}

fn pki_error(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError { what, source }
}

/// What a node needs for mutual TLS: the job CA's certificate (to check peers) and its own
/// certificate and key, all PEM.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeCredentials {
    /// The job CA's certificate.
    pub ca: String,
    /// The node's certificate, issued by the CA, naming the node.
    pub cert: String,
    /// The node's private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: credentials end up in error messages and logs.
        f.debug_struct("NodeCredentials")
            .field("ca", &format_args!("{} PEM bytes", self.ca.len()))
            .field("cert", &format_args!("{} PEM bytes", self.cert.len()))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The certificate authority of one job.
pub struct JobCa {
    job: String,
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for JobCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobCa")
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

impl JobCa {
    /// A new CA for `job`, valid for [`CA_VALIDITY`].
    pub fn generate(job: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(pki_error("generating the CA key"))?;
        let mut params = ca_params(job);
        let now = SystemTime::now();
        params.not_before = OffsetDateTime::from(now - CLOCK_SKEW);
        params.not_after = OffsetDateTime::from(now + CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .map_err(pki_error("signing the CA certificate"))?;
        Ok(Self {
            job: job.to_owned(),
            params,
            key,
            cert_pem: cert.pem(),
        })
    }

    /// The CA of `job` from its stored certificate and key (the CA Secret).
    pub fn from_pem(job: &str, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(pki_error("reading the CA key"))?;
        Ok(Self {
            job: job.to_owned(),
            params: ca_params(job),
            key,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// The CA's certificate (PEM): what every node trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PEM): stored in the CA Secret, never in a pod.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Credentials for `node`, valid for [`NODE_VALIDITY`] from now.
    pub fn issue(&self, node: NodeId) -> Result<NodeCredentials, PkiError> {
        let now = SystemTime::now();
        self.issue_valid(node, now - CLOCK_SKEW, now + NODE_VALIDITY)
    }

    /// Credentials for `node` valid from `not_before` to `not_after` (tests make expired ones).
    pub fn issue_valid(
        &self,
        node: NodeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<NodeCredentials, PkiError> {
        self.issue_named(&node_name(&self.job, node), not_before, not_after)
    }

    /// Credentials for an arbitrary DNS `name`: the node uses [`JobCa::issue`]; tests make
    /// certificates of names outside the job with this.
    pub fn issue_named(
        &self,
        name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<NodeCredentials, PkiError> {
        let key = KeyPair::generate().map_err(pki_error("generating a node key"))?;
        let mut params = CertificateParams::new(vec![name.to_owned()])
            .map_err(pki_error(format!("the name `{name}`")))?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = OffsetDateTime::from(not_before);
        params.not_after = OffsetDateTime::from(not_after);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every node is both: it serves its peers and connects to them.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(pki_error(format!("signing the certificate of `{name}`")))?;
        Ok(NodeCredentials {
            ca: self.cert_pem.clone(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// The CA's parameters, a function of the job's name only (see the module docs): the issuer
/// name of every certificate it signs must equal its certificate's subject.
fn ca_params(job: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "byzsgd.io");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{job} job CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_read_back_from_its_pem_issues_certificates_under_the_same_name() {
        let ca = JobCa::generate("quickstart").unwrap();
        let again = JobCa::from_pem("quickstart", ca.cert_pem(), &ca.key_pem()).unwrap();
        let first = ca.issue(NodeId::server(0)).unwrap();
        let second = again.issue(NodeId::worker(2)).unwrap();
        assert_eq!(first.ca, second.ca);
        assert!(first.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(second.key.contains("PRIVATE KEY"));
        assert_ne!(first.key, second.key, "every node has its own key");
        assert!(
            !format!("{first:?}").contains("PRIVATE"),
            "Debug hides the key"
        );
    }
}
