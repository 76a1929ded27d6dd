//! The CEL rules (`x-kubernetes-validations`) that make the API server itself reject a job that
//! breaks the paper's bounds or a rule's own bound, and that keep a running job's training spec
//! immutable. No IO.
//!
//! The rules mirror `byzsgd_api::validate` exactly: n_ps ≥ 3·f_ps + 2 when f_ps > 0,
//! n_w ≥ 3·f_w + 1 (PAPER.md §2), and for each aggregation rule its own bound
//! [`Rule::min_inputs`] applied to the quorum it receives (n − f inputs with f Byzantine;
//! PAPER.md §11.1). The rule bounds are generated from `min_inputs` itself, so the two cannot
//! drift apart silently: a unit test checks that every bound is linear in f (the only shape CEL
//! is given here) and compares CEL verdicts with `validate` over a grid of jobs.
//!
//! Every value is read with its default when absent, so a rule gives the same verdict whether
//! or not the API server has applied the schema defaults yet.

use byzsgd_core::gar::Rule;
use serde_json::{Value, json};

/// Spec fields that cannot change once the job exists: the whole training part, because a
/// change mid-run would give pods of one job different models, data or peers. `runPolicy`
/// (deadline, retries, clean-up, suspension) stays mutable, and so does `template`: it only
/// shapes pods created afterwards, and comparing its open-ended Kubernetes types in CEL would
/// blow the API server's rule cost budget.
pub const IMMUTABLE_FIELDS: [&str; 9] = [
    "model",
    "dataset",
    "training",
    "mode",
    "servers",
    "workers",
    "aggregation",
    "inject",
    "convergence",
];

/// The bound `min_inputs(f) = slope·f + offset` of a rule; `None` if it is not linear in f
/// (then no CEL rule could mirror it and the unit test fails).
pub fn linear_bound(rule: Rule) -> Option<(usize, usize)> {
    let offset = rule.min_inputs(0);
    let slope = rule.min_inputs(1).checked_sub(offset)?;
    (0..=64)
        .all(|f| rule.min_inputs(f) == slope * f + offset)
        .then_some((slope, offset))
}

/// `self.<path>`, or `default` when the field (or one of its parents after `self.<first>`) is
/// absent.
fn or_default(path: &str, default: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let guards: Vec<String> = (1..=parts.len())
        .map(|end| format!("has(self.{})", parts[..end].join(".")))
        .collect();
    format!("({} ? self.{path} : {default})", guards.join(" && "))
}

/// One rule with a static message. (A `messageExpression` with the actual numbers would be
/// nicer, but the API server estimates its cost far above the budget and refuses the CRD.)
fn rule(rule: &str, message: &str, field_path: &str) -> Value {
    json!({"rule": rule, "message": message, "fieldPath": field_path})
}

/// The creation rules: resilience bounds, rule bounds, injections.
pub fn spec_rules() -> Vec<Value> {
    let n_ps = "self.servers.replicas";
    let f_ps = or_default("servers.byzantine", "0");
    let n_w = "self.workers.replicas";
    let f_w = or_default("workers.byzantine", "0");
    let mut rules = vec![
        rule(
            &format!("{f_ps} == 0 || {n_ps} >= 3 * {f_ps} + 2"),
            "servers: ByzSGD needs n_ps ≥ 3·f_ps + 2 when f_ps > 0; add servers or lower servers.byzantine",
            ".servers.replicas",
        ),
        rule(
            &format!("{n_w} >= 3 * {f_w} + 1"),
            "workers: ByzSGD needs n_w ≥ 3·f_w + 1; add workers or lower workers.byzantine",
            ".workers.replicas",
        ),
    ];
    let gradients = or_default("aggregation.gradients", "'mda'");
    let models = or_default("aggregation.models", "'median'");
    for (field, chosen, n, f, role) in [
        ("gradients", &gradients, n_w, &f_w, "workers"),
        ("models", &models, n_ps, &f_ps, "servers"),
    ] {
        for candidate in Rule::ALL {
            // A non-linear bound has no rule here; the unit test `bounds_are_linear` fails.
            let Some((slope, offset)) = linear_bound(candidate) else {
                continue;
            };
            let name = candidate.name();
            let bound = candidate.bound();
            rules.push(rule(
                &format!("{chosen} != '{name}' || {n} - {f} >= {slope} * {f} + {offset}"),
                &format!(
                    "aggregation.{field}: rule `{name}` needs {bound}, applied to the quorum of \
                     n − f {role} it receives; add {role} or choose a rule with a looser bound"
                ),
                &format!(".aggregation.{field}"),
            ));
        }
    }
    rules.push(rule(
        &format!(
            "!has(self.inject) || self.inject.all(i, (has(i.count) ? i.count : 1) <= \
             (i.role == 'server' ? {n_ps} : {n_w}))"
        ),
        "inject: each entry's count must be ≤ the replicas of its role",
        ".inject",
    ));
    rules.push(rule(
        "!has(self.convergence) || (self.convergence.targetAccuracy >= 0.0 && \
         self.convergence.targetAccuracy <= 1.0)",
        "convergence.targetAccuracy must be a fraction in [0, 1], e.g. 0.8",
        ".convergence.targetAccuracy",
    ));
    rules.push(rule(
        "!has(self.convergence) || !has(self.convergence.maxDrift) || \
         self.convergence.maxDrift > 0.0",
        "convergence.maxDrift must be a positive distance, e.g. 1.0",
        ".convergence.maxDrift",
    ));
    rules
}

/// The transition rules: one per immutable field.
pub fn immutability_rules() -> Vec<Value> {
    IMMUTABLE_FIELDS
        .iter()
        .map(|field| {
            rule(
                &format!(
                    "has(self.{field}) == has(oldSelf.{field}) && \
                     (!has(self.{field}) || self.{field} == oldSelf.{field})"
                ),
                &format!(
                    "spec.{field} is immutable: a running job cannot change it; delete the job \
                     and create it again (only spec.runPolicy may change)"
                ),
                &format!(".{field}"),
            )
        })
        .collect()
}

/// schemars transform on the spec's schema: attaches [`spec_rules`] and
/// [`immutability_rules`] as `x-kubernetes-validations`.
pub fn add_rules(schema: &mut schemars::Schema) {
    let mut rules = spec_rules();
    rules.extend(immutability_rules());
    schema.insert("x-kubernetes-validations".into(), Value::Array(rules));
}

#[cfg(test)]
mod tests {
    use byzsgd_core::job::JobSpec;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    use super::*;
    use crate::{job::ByzSgdJob, validate::validate};

    /// CEL is given each bound as slope·f + offset; a bound of another shape must fail here
    /// rather than be silently left out of admission.
    #[test]
    fn bounds_are_linear() {
        for rule in Rule::ALL {
            assert!(
                linear_bound(rule).is_some(),
                "{rule}: min_inputs is not linear in f"
            );
        }
        assert_eq!(linear_bound(Rule::Krum), Some((2, 3)));
        assert_eq!(linear_bound(Rule::Bulyan), Some((4, 3)));
    }

    fn schema() -> Value {
        let crd = ByzSgdJob::crd();
        serde_json::to_value(
            &crd.spec.versions[0]
                .schema
                .as_ref()
                .expect("schema")
                .open_api_v3_schema,
        )
        .expect("schema serialises")
    }

    fn job(spec: &Value) -> Value {
        json!({"apiVersion": "byzsgd.io/v1alpha1", "kind": "ByzSGDJob",
               "metadata": {"name": "grid", "namespace": "default"}, "spec": spec})
    }

    fn cel_verdict(schema: &Value, object: &Value, old: Option<&Value>) -> Result<(), String> {
        kube::core::cel::Validator::new()
            .validate(schema, object, old)
            .map_err(|e| format!("{e:?}"))
    }

    /// The API server's verdict (CEL, evaluated here client-side by kube-cel) equals the node's
    /// `validate` over a grid of rules, sizes and declared f, for both aggregation slots.
    #[test]
    fn cel_verdicts_match_validate_over_a_grid() {
        let schema = schema();
        let mut checked = 0;
        for rule in Rule::ALL {
            for slot in ["gradients", "models"] {
                for n in 1..=9_usize {
                    for f in 0..=3_usize {
                        let (servers, workers) = if slot == "gradients" {
                            (
                                json!({"replicas": 1}),
                                json!({"replicas": n, "byzantine": f}),
                            )
                        } else {
                            (
                                json!({"replicas": n, "byzantine": f}),
                                json!({"replicas": 1}),
                            )
                        };
                        let spec = json!({
                            "model": {"kind": "logistic"},
                            "dataset": {"name": "synthetic"},
                            "training": {"steps": 10, "learningRate": 0.1},
                            "servers": servers,
                            "workers": workers,
                            "aggregation": {slot: rule.name()},
                        });
                        let parsed: JobSpec =
                            serde_json::from_value(spec.clone()).expect("grid spec parses");
                        let expected = validate(&parsed).is_ok();
                        let verdict = cel_verdict(&schema, &job(&spec), None);
                        assert_eq!(
                            verdict.is_ok(),
                            expected,
                            "rule {rule} on {slot}, n = {n}, f = {f}: CEL says {verdict:?}, validate says {expected}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, Rule::ALL.len() * 2 * 9 * 4);
    }

    #[test]
    fn injecting_more_nodes_than_replicas_is_rejected() {
        let spec = json!({
            "model": {"kind": "logistic"}, "training": {"steps": 10, "learningRate": 0.1},
            "servers": {"replicas": 1}, "workers": {"replicas": 2},
            "inject": [{"role": "worker", "count": 3, "attack": "sign-flip"}],
        });
        let verdict = cel_verdict(&schema(), &job(&spec), None);
        assert!(verdict.is_err_and(|e| e.contains("count")));
    }

    /// Only runPolicy may change on a live job.
    #[test]
    fn training_fields_are_immutable_and_run_policy_is_not() {
        let schema = schema();
        let base = json!({
            "model": {"kind": "logistic"}, "training": {"steps": 10, "learningRate": 0.1},
            "servers": {"replicas": 1}, "workers": {"replicas": 1},
        });
        let old = job(&base);
        let mut more_workers = base.clone();
        more_workers["workers"]["replicas"] = json!(2);
        let verdict = cel_verdict(&schema, &job(&more_workers), Some(&old));
        assert!(verdict.is_err_and(|e| e.contains("immutable")));
        let mut suspended = base.clone();
        suspended["runPolicy"] = json!({"suspend": true, "activeDeadlineSeconds": 60});
        assert_eq!(cel_verdict(&schema, &job(&suspended), Some(&old)), Ok(()));
    }
}
