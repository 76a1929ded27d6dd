//! Hostile input never panics (issue #15, item 3), property-based: any text as a `ByzSGDJob`
//! or `ByzantineChaos` file, and well-formed files whose every number is replaced by an awkward
//! value, end in a parsed, validated resource or an error — never a panic. A valid chaos spec
//! against a valid plan also selects its nodes without panicking.

// Property tests unwrap their fixtures: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use byzsgd_api::{
    Manifest,
    chaos::{self, ChaosResource},
    validate,
};
use proptest::prelude::*;

/// A number where YAML expects one: zero, negative, huge, fractional, not a number at all.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0_u64..20).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_owned()),
        (-2.0_f64..2.0).prop_map(|x| x.to_string()),
        Just(".nan".to_owned()),
        Just("-.inf".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        "[a-z]{0,6}",
    ]
}

fn job_text(n: &[String]) -> String {
    format!(
        "
apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {{name: fuzz}}
spec:
  model: {{kind: mlp, hidden: [{}]}}
  dataset: {{name: synthetic}}
  training: {{steps: {}, batchSize: {}, learningRate: {}, momentum: {}, seed: {}, evaluateEvery: {}}}
  servers: {{replicas: {}, byzantine: {}, gatherEvery: {}}}
  workers: {{replicas: {}, byzantine: {}}}
  inject:
    - {{role: worker, count: {}, attack: alie}}
  convergence: {{targetAccuracy: {}, withinSteps: {}}}
  runPolicy: {{backoffLimit: {}}}
",
        n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10], n[11], n[12], n[13],
        n[14], n[15]
    )
}

fn chaos_text(n: &[String]) -> String {
    format!(
        "
apiVersion: byzsgd.io/v1alpha1
kind: ByzantineChaos
metadata: {{name: fuzz}}
spec:
  job: fuzz
  role: worker
  selector: {{mode: fixed, value: {}}}
  action: {{kind: delay, latencyMs: {}, jitterMs: {}}}
  window: {{fromStep: {}, untilStep: {}}}
  seed: {}
",
        n[0], n[1], n[2], n[3], n[4], n[5]
    )
}

/// A job that validates, to check chaos specs against.
const VALID_JOB: &str = "
apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {name: fuzz}
spec:
  model: {kind: logistic}
  dataset: {name: synthetic}
  training: {steps: 100, learningRate: 0.05}
  servers: {replicas: 5, byzantine: 1}
  workers: {replicas: 7, byzantine: 2}
  chaos: {allowed: true}
";

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any text at all.
    #[test]
    fn any_text_is_a_resource_or_an_error(text in any::<String>()) {
        if let Ok(manifest) = Manifest::parse(&text, "<fuzz>") {
            let _ = validate(&manifest.spec);
        }
        let _ = ChaosResource::parse(&text, "<fuzz>");
    }

    /// A well-formed job whose every number is awkward: parsed and validated, or an error.
    #[test]
    fn awkward_numbers_in_a_job_are_an_error_or_a_plan(numbers in proptest::collection::vec(number(), 16)) {
        if let Ok(manifest) = Manifest::parse(&job_text(&numbers), "<fuzz>") {
            let _ = validate(&manifest.spec);
        }
    }

    /// A well-formed chaos spec whose every number is awkward, checked against a valid job
    /// and, when valid, selecting its nodes.
    #[test]
    fn awkward_numbers_in_a_chaos_spec_are_an_error_or_a_selection(numbers in proptest::collection::vec(number(), 6)) {
        let plan = validate(&Manifest::parse(VALID_JOB, "<job>").unwrap().spec).unwrap();
        if let Ok(resource) = ChaosResource::parse(&chaos_text(&numbers), "<fuzz>")
            && chaos::validate(&resource.spec, "fuzz", &plan).is_ok()
        {
            let selected = chaos::select(&resource.spec, &plan);
            prop_assert!(selected.iter().all(|&i| i < plan.workers));
        }
    }
}
