//! The `ByzantineChaos` custom resource (group `byzsgd.io`, version `v1alpha1`): a chaos
//! experiment on one `ByzSGDJob`.
//!
//! The spec *is* the [`ChaosSpec`] (a transparent wrapper), so the file `byzsgd-node local` reads
//! with a job is the file `kubectl apply` accepts (issue #7, "one chaos format, two runtimes").
//! The status records which pods were hit, when, and a Litmus-style verdict (ANCHORS.md §2:
//! Litmus' ChaosResult carries a phase and a Pass/Fail verdict per experiment). No IO here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ChaosSpec;

/// A chaos experiment on a ByzSGD job: which nodes misbehave, how and when.
// Each printcolumn repeats `type_`; clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "byzsgd.io",
    version = "v1alpha1",
    kind = "ByzantineChaos",
    plural = "byzantinechaos",
    shortname = "bzchaos",
    category = "byzsgd",
    namespaced,
    status = "ByzantineChaosStatus",
    doc = "A chaos experiment on a ByzSGDJob: which nodes misbehave, how and when.",
    printcolumn(name = "Job", type_ = "string", json_path = ".spec.job"),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action.kind"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// Transparent, not `flatten`: serde ignores the inner `deny_unknown_fields` of a flattened
// struct, and a typo must not silently disable part of an experiment.
#[serde(transparent)]
pub struct ByzantineChaosSpec {
    /// The experiment: target job, role, selector, action, window and seed (the node's format,
    /// shared with `byzsgd-node local`).
    pub chaos: ChaosSpec,
}

/// Where an experiment is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ChaosPhase {
    /// Waiting for the job, its pods or the window's first step.
    Pending,
    /// The selected pods received the action.
    Running,
    /// The window closed or the job ended; the verdict follows when the job ends.
    Ended,
    /// A selected pod refused the action (the condition says which and why).
    Failed,
    /// The spec does not fit the job, or the job does not allow chaos; fix the spec.
    Invalid,
}

impl ChaosPhase {
    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Ended => "Ended",
            Self::Failed => "Failed",
            Self::Invalid => "Invalid",
        }
    }

    /// Whether nothing more will happen to the pods.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ended | Self::Failed | Self::Invalid)
    }
}

/// Did the job hold up under the chaos (Litmus' verdict)?
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    /// The job has not ended yet.
    Pending,
    /// The job succeeded and reached its convergence target.
    Pass,
    /// The job failed, missed its target, or ended before the chaos could run.
    Fail,
}

/// What the operator last observed of an experiment. Written only through the status
/// subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ByzantineChaosStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Ended, Failed or Invalid (the `PHASE` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ChaosPhase>,
    /// The pods the selector chose, by name (the node's deterministic `chaos::select`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected_pods: Vec<String>,
    /// When the selected pods received the action (or were deleted, for `crash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the window closed or the job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Pending until the job ends, then Pass or Fail (the `VERDICT` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why the verdict is what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_reason: Option<String>,
    /// Condition list (Valid, Injected, Ended). A condition's `lastTransitionTime` changes only
    /// when its status does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The condition types of an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChaosCondition {
    /// The spec fits the job and the job allows chaos.
    Valid,
    /// Every selected pod received the action.
    Injected,
    /// The window closed or the job ended.
    Ended,
}

impl ChaosCondition {
    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "Valid",
            Self::Injected => "Injected",
            Self::Ended => "Ended",
        }
    }
}

impl ByzantineChaosStatus {
    /// The condition of `type_`, if set.
    pub fn condition(&self, type_: ChaosCondition) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;
    use crate::chaos::{ChaosAction, ChaosResource, SelectorMode};

    const ALIE: &str = include_str!("../../tests/fixtures/chaos/alie-workers.yaml");

    /// One chaos format, two runtimes: the node's fixture parses as the resource, and its spec
    /// is exactly what `byzsgd-node local` reads from the same file.
    #[test]
    fn node_fixture_parses_as_resource_and_as_local_chaos() {
        let resource: ByzantineChaos = serde_yaml_ng::from_str(ALIE).expect("fixture parses");
        let local = ChaosResource::parse(ALIE, "alie-workers.yaml").expect("local parse");
        assert_eq!(resource.spec.chaos, local.spec);
        assert_eq!(resource.spec.chaos.selector.mode, SelectorMode::Fixed);
        assert!(
            matches!(resource.spec.chaos.action, ChaosAction::Attack { ref name, .. } if name == "alie")
        );
    }

    /// A typo in the spec must not silently disable part of an experiment.
    #[test]
    fn unknown_spec_field_is_rejected() {
        let typo = ALIE.replace("seed: 3", "sead: 3");
        let error = serde_yaml_ng::from_str::<ByzantineChaos>(&typo)
            .expect_err("an unknown field must be rejected");
        assert!(error.to_string().contains("sead"), "{error}");
    }

    #[test]
    fn crd_names_columns_and_schema_are_as_documented() {
        let crd = ByzantineChaos::crd();
        assert_eq!(crd.spec.group, crate::manifest::GROUP);
        assert_eq!(crd.spec.names.kind, "ByzantineChaos");
        assert_eq!(crd.spec.names.plural, "byzantinechaos");
        assert_eq!(crd.spec.names.short_names, Some(vec!["bzchaos".to_owned()]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<String> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.to_uppercase())
            .collect();
        assert_eq!(columns, ["JOB", "ACTION", "PHASE", "VERDICT", "AGE"]);
        let schema = serde_json::to_value(&version.schema).expect("schema serialises");
        let text = schema.to_string();
        assert!(
            !text.contains("oneOf") && !text.contains("anyOf"),
            "non-structural union left in the schema"
        );
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        let required = spec["required"]
            .as_array()
            .expect("spec has required fields");
        for field in ["job", "role", "action"] {
            assert!(
                required.iter().any(|r| r == field),
                "spec.{field} is not required: {spec}"
            );
        }
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        for field in [
            "phase",
            "selectedPods",
            "startTime",
            "endTime",
            "verdict",
            "verdictReason",
            "conditions",
            "observedGeneration",
        ] {
            assert!(
                status[field].is_object(),
                "status.{field} missing: {status}"
            );
        }
    }
}
