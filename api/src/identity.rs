//! Who a node is, as every party names it: the DNS name in its certificate, its pod's name, and
//! where its credentials live (the per-node Secret's keys and the path they are mounted at).
//!
//! ByzSGD's bounds assume a Byzantine node holds exactly one identity. A node's identity is the
//! one DNS subject-alternative name of the certificate the job's CA issued it,
//! `<job>-<role>-<index>` — the same string as its pod's name and hostname — so the operator
//! (which issues), the node (which presents and checks) and `kubectl get pods` agree. The
//! issuing itself is [`crate::pki`] (feature `pki`).

use byzsgd_core::protocol::NodeId;

/// The name of `node` of `job`: `<job>-<role>-<index>`. It is the node's pod name, hostname and
/// the only DNS name in its certificate.
pub fn node_name(job: &str, node: NodeId) -> String {
    format!("{job}-{node}")
}

/// The node of `job` that `name` names (the inverse of [`node_name`]); None for any other
/// string, including another job's node names.
pub fn parse_node_name(job: &str, name: &str) -> Option<NodeId> {
    let node = name.strip_prefix(job)?.strip_prefix('-')?;
    NodeId::parse(node)
}

/// Where a node pod's credentials are mounted (the Secret [`node_secret_name`]).
pub const TLS_DIR: &str = "/etc/byzsgd-tls";
/// The job CA's certificate (PEM) in [`TLS_DIR`] and in the node Secret.
pub const CA_FILE: &str = "ca.crt";
/// The node's certificate (PEM) in [`TLS_DIR`] and in the node Secret (the `kubernetes.io/tls`
/// key).
pub const CERT_FILE: &str = "tls.crt";
/// The node's private key (PEM, PKCS#8) in [`TLS_DIR`] and in the node Secret.
pub const KEY_FILE: &str = "tls.key";
/// Key of the CA's private key in the CA Secret (never mounted into a pod).
pub const CA_KEY_FILE: &str = "ca.key";

/// The Secret with `node`'s credentials ([`CA_FILE`], [`CERT_FILE`], [`KEY_FILE`]).
pub fn node_secret_name(job: &str, node: NodeId) -> String {
    format!("{}-tls", node_name(job, node))
}

/// The Secret with the job CA's certificate and key ([`CA_FILE`], [`CA_KEY_FILE`]): the
/// operator issues every node's certificate from it, also after its own restart.
pub fn ca_secret_name(job: &str) -> String {
    format!("{job}-ca")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_round_trip_and_belong_to_one_job() {
        let node = NodeId::worker(3);
        assert_eq!(node_name("quickstart", node), "quickstart-worker-3");
        assert_eq!(
            parse_node_name("quickstart", "quickstart-worker-3"),
            Some(node)
        );
        // A job whose name extends another's does not own the other's nodes, nor vice versa.
        assert_eq!(parse_node_name("quick", "quickstart-worker-3"), None);
        assert_eq!(parse_node_name("quickstart", "quick-worker-3"), None);
        assert_eq!(
            parse_node_name("a-b", "a-b-server-0"),
            Some(NodeId::server(0))
        );
        for bad in [
            "quickstart",
            "quickstart-",
            "quickstart-worker",
            "quickstart-chief-0",
        ] {
            assert_eq!(parse_node_name("quickstart", bad), None, "{bad}");
        }
        assert_eq!(
            node_secret_name("quickstart", NodeId::server(1)),
            "quickstart-server-1-tls"
        );
    }
}
