//! The contract between the operator and the node binary: the pods the operator builds start
//! `byzsgd-node` with arguments the node's own command line accepts, for the role, index,
//! manifest path and peer template the pod is meant to have. (The node depends on the operator
//! only here, as a dev-dependency; the operator never depends on the node.)

use byzsgd_api::job::ByzSgdJob;
use byzsgd_node::cli::{Cli, Command};
use byzsgd_operator::controller::{
    build::{build, labels, pod},
    validate::validate_job,
};
use clap::Parser;

const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");

/// Parses a manifest as the API server would hand it over: with a namespace and a uid.
fn job_from(yaml: &str) -> ByzSgdJob {
    let mut job: ByzSgdJob = serde_yaml_ng::from_str(yaml).expect("manifest parses");
    job.metadata.namespace = Some("ns".to_owned());
    job.metadata.uid = Some("uid-1".to_owned());
    job
}

/// The contract with the node: the rendered args parse with the node's clap CLI into the
/// intended role, index, manifest path and peer template.
#[test]
fn worker_and_server_pod_args_parse_with_node_cli() {
    let job = validate_job(&job_from(QUICKSTART)).expect("the quickstart is valid");
    for pod in build(&job).pods {
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let args = container.args.clone().expect("args");
        let labels = pod.metadata.labels.as_ref().expect("labels");
        let cli = Cli::try_parse_from(std::iter::once("byzsgd-node".to_owned()).chain(args))
            .unwrap_or_else(|e| panic!("{:?} does not parse: {e}", pod.metadata.name));
        let (role, node) = match cli.command {
            Command::Server(a) => ("server", a),
            Command::Worker(a) => ("worker", a),
            other => panic!("unexpected subcommand {other:?}"),
        };
        assert_eq!(labels[labels::ROLE_LABEL], role);
        assert_eq!(labels[labels::INDEX_LABEL], node.index.to_string());
        assert_eq!(node.job_file, std::path::Path::new("/etc/byzsgd/job.yaml"));
        assert_eq!(
            node.peer_template.as_deref(),
            Some("{job}-{role}-{index}.{job}:7070")
        );
        assert_eq!(node.listen.port(), 7070);
        assert_eq!(node.admin_listen.port(), 9090);
        // Nodes keep serving their final /status long enough for the operator to read it.
        assert!(
            (node.linger_seconds - f64::from(pod::NODE_LINGER_SECONDS)).abs() < 1e-9,
            "--linger-seconds {}",
            node.linger_seconds
        );
        // Servers keep checkpoints on the volume mounted for them; workers keep none.
        let checkpoint_dir = node.checkpoint_dir.as_deref();
        if role == "server" {
            assert_eq!(
                checkpoint_dir,
                Some(std::path::Path::new(byzsgd_api::job::CHECKPOINT_MOUNT))
            );
            assert!(
                container
                    .volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.mount_path == byzsgd_api::job::CHECKPOINT_MOUNT)
            );
        } else {
            assert_eq!(checkpoint_dir, None);
        }
        // The manifest is mounted where --job-file points.
        let mount = &container.volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(mount.mount_path, "/etc/byzsgd");
    }
}
