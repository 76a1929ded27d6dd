//! Reads a `ByzSGDJob` manifest file — the same YAML that `kubectl apply` accepts — into a
//! [`JobSpec`]. Pod-level fields (`spec.runPolicy`, `spec.template`) belong to Kubernetes and
//! are ignored here; any other unknown field is an error naming its path, so typos never pass
//! silently.

use std::path::{Path, PathBuf};

use byzsgd_core::job::JobSpec;
use serde::Deserialize;

/// The API group of every resource, defined once (STYLE.md §2.5).
pub const GROUP: &str = "byzsgd.io";
/// API group and version of the `ByzSGDJob` and `ByzantineChaos` resources (DESIGN.md §4).
pub const API_VERSION: &str = "byzsgd.io/v1alpha1";
/// Kind of the resource.
pub const KIND: &str = "ByzSGDJob";
/// Spec fields that only matter to Kubernetes pods; the local runtime ignores them.
pub const POD_LEVEL_FIELDS: [&str; 2] = ["runPolicy", "template"];

/// A parsed manifest: the job's name and its training spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `metadata.name`.
    pub name: String,
    /// `spec`, without the pod-level fields.
    pub spec: JobSpec,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("{origin} is not valid YAML: {message}")]
    Yaml {
        /// File name or `<input>`.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field has the wrong type or value, or is unknown.
    #[error("{origin}: field `{field}`: {message}")]
    Field {
        /// File name or `<input>`.
        origin: String,
        /// Path of the field, e.g. `spec.servers.replicas`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<RawMetadata>,
    spec: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawMetadata {
    name: Option<String>,
}

impl Manifest {
    /// Reads and parses a manifest file.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// Parses manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let (name, mut spec) = parse_envelope(text, origin, KIND)?;
        if let Some(object) = spec.as_object_mut() {
            for pod_level in POD_LEVEL_FIELDS {
                object.remove(pod_level);
            }
        }
        let spec = parse_spec(spec, origin)?;
        Ok(Self { name, spec })
    }
}

/// The text of a resource file, or a [`ManifestError::Read`] naming it.
pub(crate) fn read_text(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Checks a resource's envelope (`apiVersion`, `kind`, `metadata.name`) and returns its name
/// and raw `spec`. Shared by every resource of the `byzsgd.io` group, so they all report
/// mistakes the same way.
pub(crate) fn parse_envelope(
    text: &str,
    origin: &str,
    kind: &str,
) -> Result<(String, serde_json::Value), ManifestError> {
    let field = |field: &str, message: String| ManifestError::Field {
        origin: origin.to_owned(),
        field: field.to_owned(),
        message,
    };
    let raw: RawManifest = serde_yaml_ng::from_str(text).map_err(|error| ManifestError::Yaml {
        origin: origin.to_owned(),
        message: error.to_string(),
    })?;
    match raw.api_version.as_deref() {
        Some(API_VERSION) => {}
        other => {
            return Err(field(
                "apiVersion",
                format!("expected `{API_VERSION}`, found {}", describe(other)),
            ));
        }
    }
    if raw.kind.as_deref() != Some(kind) {
        return Err(field(
            "kind",
            format!("expected `{kind}`, found {}", describe(raw.kind.as_deref())),
        ));
    }
    let name = raw
        .metadata
        .and_then(|metadata| metadata.name)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            field(
                "metadata.name",
                format!("missing; every {kind} needs a name"),
            )
        })?;
    if !is_dns_label(&name) {
        return Err(field(
            "metadata.name",
            format!(
                "`{name}` is not a DNS label (lower-case letters, digits and '-', at most 50 characters, so pod names stay valid)"
            ),
        ));
    }
    let spec = raw.spec.ok_or_else(|| field("spec", "missing".into()))?;
    Ok((name, spec))
}

/// Deserializes a resource's `spec`, naming the path of the first bad field (`spec.a.b`).
pub(crate) fn parse_spec<T: serde::de::DeserializeOwned>(
    spec: serde_json::Value,
    origin: &str,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(spec).map_err(|error| {
        let path = error.path().to_string();
        ManifestError::Field {
            origin: origin.to_owned(),
            field: format!("spec.{path}"),
            message: error.into_inner().to_string(),
        }
    })
}

fn describe(value: Option<&str>) -> String {
    value.map_or_else(|| "nothing".to_owned(), |value| format!("`{value}`"))
}

/// Pod names are `<job>-worker-<i>`, so the job name must leave room within the 63-character
/// DNS label limit.
fn is_dns_label(name: &str) -> bool {
    name.len() <= 50
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
