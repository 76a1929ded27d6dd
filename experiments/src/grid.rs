//! Grid expansion: a scenario's axes become runs, each a labelled copy of the base manifest
//! with overrides applied. Pure; the manifest is handled as a JSON value so overrides need not
//! know the job schema, and each run's manifest is then validated by the node's own parser,
//! which names any field an override broke.
//!
//! An axis is either a list (`seed: [1, 2, 3]`), whose values set the axis's field, or a map
//! of labels to override sets (`system: {byzsgd: {}, vanilla: {rule: average}}`). An override
//! key is a shortcut (below) or a dotted path into the manifest (`spec.training.batchSize`;
//! numbers index lists: `spec.inject.0.attack`). Runs are the cartesian product, the first
//! axis outermost.
//!
//! | shortcut | sets |
//! |---|---|
//! | `seed`, `steps` | `spec.training.seed`, `spec.training.steps` |
//! | `T` | `spec.servers.gatherEvery` |
//! | `rule`, `modelRule` | `spec.aggregation.gradients`, `spec.aggregation.models` |
//! | `mode` | `spec.mode` |
//! | `model` | `spec.model` (a string is the `kind`) |
//! | `servers`, `workers` | `spec.servers.replicas`, `spec.workers.replicas` |
//! | `fps`, `fw` | declared Byzantine servers / workers, and the count of that role's `inject` entry |
//! | `serverAttack`, `workerAttack` | the attack of that role's `inject` entry (created with `count` = declared f; `none` removes it) |

use serde_json::{Map, Value, json};
use serde_yaml_ng::Mapping;

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Position in the sweep, from 0.
    pub index: usize,
    /// `r000`, `r001`, …: the `run` column of the CSVs.
    pub id: String,
    /// (axis, label) for every axis, in grid order.
    pub labels: Vec<(String, String)>,
    /// The run's manifest, `metadata.name` set to [`Run::job_name`].
    pub manifest: Value,
    /// The job's name: `<scenario>-<index>`.
    pub job_name: String,
}

impl Run {
    /// The label of `axis`, if the grid has it.
    pub fn label(&self, axis: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, l)| l.as_str())
    }

    /// `axis=label, …` for progress lines.
    pub fn describe(&self) -> String {
        if self.labels.is_empty() {
            return "(single run)".to_owned();
        }
        self.labels
            .iter()
            .map(|(a, l)| format!("{a}={l}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const SHORTCUTS: &[&str] = &[
    "seed",
    "steps",
    "T",
    "rule",
    "modelRule",
    "mode",
    "model",
    "servers",
    "workers",
    "fps",
    "fw",
    "serverAttack",
    "workerAttack",
];

/// Checks the grid's shape: every axis a non-empty list or a map of override maps, every key a
/// shortcut or a `spec.` path. Errors are (field path, message with the fix).
pub fn check_axes(grid: &Mapping) -> Result<(), (String, String)> {
    for (axis, values) in grid {
        let Some(axis) = axis.as_str() else {
            return Err((
                "grid".to_owned(),
                format!("axis names must be strings, found {axis:?}"),
            ));
        };
        let at = format!("grid.{axis}");
        match values {
            serde_yaml_ng::Value::Sequence(list) => {
                if list.is_empty() {
                    return Err((at, "an axis needs at least one value".to_owned()));
                }
                check_key(axis).map_err(|message| (at.clone(), message))?;
            }
            serde_yaml_ng::Value::Mapping(variants) => {
                if variants.is_empty() {
                    return Err((at, "an axis needs at least one value".to_owned()));
                }
                for (label, overrides) in variants {
                    let label = label_text(label);
                    let serde_yaml_ng::Value::Mapping(overrides) = overrides else {
                        return Err((
                            format!("{at}.{label}"),
                            "a labelled value must be a map of overrides, e.g. \
                             `{rule: average}` or `{}`"
                                .to_owned(),
                        ));
                    };
                    for key in overrides.keys() {
                        let key = label_text(key);
                        check_key(&key)
                            .map_err(|message| (format!("{at}.{label}.{key}"), message))?;
                    }
                }
            }
            _ => {
                return Err((
                    at,
                    "an axis is a list of values (`[1, 2]`) or a map of labelled overrides \
                     (`{a: {rule: mda}, b: {rule: krum}}`)"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), String> {
    if SHORTCUTS.contains(&key) || key.starts_with("spec.") {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is neither a shortcut ({}) nor a manifest path starting with `spec.`",
            SHORTCUTS.join(", ")
        ))
    }
}

fn label_text(value: &serde_yaml_ng::Value) -> String {
    match value {
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// Why an override could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("grid.{axis} = {label}: `{key}`: {message}")]
pub struct OverrideError {
    /// The axis.
    pub axis: String,
    /// The label.
    pub label: String,
    /// The override key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// One value of an axis: its label and the overrides it applies.
type Choice = (String, Vec<(String, Value)>);

/// Expands the grid over `base` (a manifest as JSON) into runs named after `scenario`.
pub fn expand(scenario: &str, base: &Value, grid: &Mapping) -> Result<Vec<Run>, OverrideError> {
    // (axis, [(label, [(key, value)])])
    let mut axes: Vec<(String, Vec<Choice>)> = Vec::new();
    for (axis, values) in grid {
        let axis = label_text(axis);
        let choices = match values {
            serde_yaml_ng::Value::Sequence(list) => list
                .iter()
                .map(|value| (label_text(value), vec![(axis.clone(), to_json(value))]))
                .collect(),
            serde_yaml_ng::Value::Mapping(variants) => variants
                .iter()
                .map(|(label, overrides)| {
                    let overrides = match overrides {
                        serde_yaml_ng::Value::Mapping(map) => map
                            .iter()
                            .map(|(k, v)| (label_text(k), to_json(v)))
                            .collect(),
                        _ => Vec::new(),
                    };
                    (label_text(label), overrides)
                })
                .collect(),
            _ => Vec::new(),
        };
        axes.push((axis, choices));
    }
    let total: usize = axes.iter().map(|(_, c)| c.len()).product();
    let mut runs = Vec::with_capacity(total);
    for index in 0..total {
        // Mixed-radix digits of `index`, last axis fastest.
        let mut rest = index;
        let mut picks = vec![0; axes.len()];
        for (slot, (_, choices)) in picks.iter_mut().zip(&axes).rev() {
            *slot = rest % choices.len();
            rest /= choices.len();
        }
        let mut manifest = base.clone();
        let mut labels = Vec::with_capacity(axes.len());
        for ((axis, choices), pick) in axes.iter().zip(&picks) {
            let (label, overrides) = &choices[*pick];
            for (key, value) in overrides {
                apply(&mut manifest, key, value).map_err(|message| OverrideError {
                    axis: axis.clone(),
                    label: label.clone(),
                    key: key.clone(),
                    message,
                })?;
            }
            labels.push((axis.clone(), label.clone()));
        }
        let job_name = format!("{scenario}-{index}");
        set_path(&mut manifest, &["metadata", "name"], json!(job_name));
        runs.push(Run {
            index,
            id: format!("r{index:03}"),
            labels,
            manifest,
            job_name,
        });
    }
    Ok(runs)
}

fn to_json(value: &serde_yaml_ng::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Applies one override (shortcut or dotted path) to a manifest.
pub fn apply(manifest: &mut Value, key: &str, value: &Value) -> Result<(), String> {
    match key {
        "seed" => set_path(manifest, &["spec", "training", "seed"], value.clone()),
        "steps" => set_path(manifest, &["spec", "training", "steps"], value.clone()),
        "T" => set_path(manifest, &["spec", "servers", "gatherEvery"], value.clone()),
        "rule" => set_path(
            manifest,
            &["spec", "aggregation", "gradients"],
            value.clone(),
        ),
        "modelRule" => set_path(manifest, &["spec", "aggregation", "models"], value.clone()),
        "mode" => set_path(manifest, &["spec", "mode"], value.clone()),
        "model" => {
            let model = match value {
                Value::String(kind) => json!({"kind": kind}),
                other => other.clone(),
            };
            set_path(manifest, &["spec", "model"], model);
        }
        "servers" => set_path(manifest, &["spec", "servers", "replicas"], value.clone()),
        "workers" => set_path(manifest, &["spec", "workers", "replicas"], value.clone()),
        "fps" => set_byzantine(manifest, "server", value)?,
        "fw" => set_byzantine(manifest, "worker", value)?,
        "serverAttack" => set_attack(manifest, "server", value)?,
        "workerAttack" => set_attack(manifest, "worker", value)?,
        path => {
            let segments: Vec<&str> = path.split('.').collect();
            if segments.iter().any(|s| s.is_empty()) {
                return Err("empty segment in the path".to_owned());
            }
            set_path(manifest, &segments, value.clone());
        }
    }
    Ok(())
}

fn role_key(role: &str) -> &'static str {
    if role == "server" {
        "servers"
    } else {
        "workers"
    }
}

fn set_byzantine(manifest: &mut Value, role: &str, value: &Value) -> Result<(), String> {
    let count = value
        .as_u64()
        .ok_or_else(|| format!("`{value}` is not a count: write a whole number such as 1"))?;
    set_path(
        manifest,
        &["spec", role_key(role), "byzantine"],
        json!(count),
    );
    if let Some(inject) = manifest
        .pointer_mut("/spec/inject")
        .and_then(Value::as_array_mut)
    {
        for entry in inject.iter_mut() {
            if entry.get("role").and_then(Value::as_str) == Some(role)
                && entry.get("indices").is_none()
            {
                entry["count"] = json!(count);
            }
        }
        inject.retain(|entry| entry.get("count").and_then(Value::as_u64) != Some(0));
    }
    Ok(())
}

fn set_attack(manifest: &mut Value, role: &str, value: &Value) -> Result<(), String> {
    let (name, params) = match value {
        Value::String(name) => (name.clone(), None),
        Value::Object(map) => (
            map.get("name")
                .and_then(Value::as_str)
                .ok_or("an attack map needs `name`, e.g. `{name: alie, params: {z: 1.5}}`")?
                .to_owned(),
            map.get("params").cloned(),
        ),
        other => return Err(format!("`{other}` is not an attack name")),
    };
    let declared = manifest
        .pointer(&format!("/spec/{}/byzantine", role_key(role)))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if !manifest
        .pointer("/spec/inject")
        .is_some_and(Value::is_array)
    {
        set_path(manifest, &["spec", "inject"], json!([]));
    }
    let Some(inject) = manifest
        .pointer_mut("/spec/inject")
        .and_then(Value::as_array_mut)
    else {
        return Err("spec.inject is not a list".to_owned());
    };
    inject.retain(|entry| entry.get("role").and_then(Value::as_str) != Some(role));
    if name != "none" && declared > 0 {
        let mut entry = json!({"role": role, "count": declared, "attack": name});
        if let Some(params) = params {
            entry["params"] = params;
        }
        inject.push(entry);
    }
    Ok(())
}

/// Sets `value` at `segments`, creating objects on the way; numeric segments index lists.
fn set_path(target: &mut Value, segments: &[&str], value: Value) {
    let Some((last, parents)) = segments.split_last() else {
        *target = value;
        return;
    };
    let mut node = target;
    for segment in parents {
        node = child(node, segment);
    }
    match (node, last.parse::<usize>()) {
        (Value::Array(list), Ok(index)) if index < list.len() => list[index] = value,
        (node, _) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            if let Value::Object(map) = node {
                map.insert((*last).to_owned(), value);
            }
        }
    }
}

fn child<'a>(node: &'a mut Value, segment: &str) -> &'a mut Value {
    if let (Value::Array(list), Ok(index)) = (&*node, segment.parse::<usize>())
        && index < list.len()
    {
        let Value::Array(list) = node else {
            unreachable!("matched as an array above")
        };
        return &mut list[index];
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    let Value::Object(map) = node else {
        unreachable!("made an object above")
    };
    map.entry(segment.to_owned()).or_insert(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(yaml: &str) -> Mapping {
        serde_yaml_ng::from_str(yaml).expect("grid yaml")
    }

    fn base() -> Value {
        json!({
            "apiVersion": "byzsgd.io/v1alpha1", "kind": "ByzSGDJob", "metadata": {"name": "x"},
            "spec": {
                "training": {"steps": 10, "seed": 1},
                "servers": {"replicas": 5, "byzantine": 1},
                "workers": {"replicas": 7, "byzantine": 2},
                "aggregation": {"gradients": "mda", "models": "median"},
                "inject": [{"role": "worker", "count": 2, "attack": "alie"}]
            }
        })
    }

    #[test]
    fn lists_and_labelled_maps_expand_to_the_cartesian_product_first_axis_outermost() {
        let grid = grid(
            "system: {byzsgd: {}, vanilla: {rule: average, modelRule: average}}\nseed: [1, 2, 3]\n",
        );
        check_axes(&grid).expect("valid");
        let runs = expand("demo", &base(), &grid).expect("expands");
        assert_eq!(runs.len(), 6);
        assert_eq!(runs[0].describe(), "system=byzsgd, seed=1");
        assert_eq!(runs[4].describe(), "system=vanilla, seed=2");
        assert_eq!(
            runs[4].manifest["spec"]["aggregation"]["gradients"],
            "average"
        );
        assert_eq!(runs[4].manifest["spec"]["training"]["seed"], 2);
        assert_eq!(runs[1].manifest["spec"]["aggregation"]["gradients"], "mda");
        assert_eq!(runs[5].manifest["metadata"]["name"], "demo-5");
        assert_eq!(runs[5].id, "r005");
    }

    #[test]
    fn f_and_attack_shortcuts_keep_inject_consistent_in_either_order() {
        for yaml in [
            "fw: [0, 1]\nworkerAttack: [foe]\n",
            "workerAttack: [foe]\nfw: [0, 1]\n",
        ] {
            let runs = expand("d", &base(), &grid(yaml)).expect("expands");
            let zero = runs
                .iter()
                .find(|r| r.label("fw") == Some("0"))
                .expect("fw 0");
            let one = runs
                .iter()
                .find(|r| r.label("fw") == Some("1"))
                .expect("fw 1");
            assert_eq!(zero.manifest["spec"]["workers"]["byzantine"], 0);
            assert_eq!(zero.manifest["spec"]["inject"], json!([]), "{yaml}");
            assert_eq!(
                one.manifest["spec"]["inject"],
                json!([{"role": "worker", "count": 1, "attack": "foe"}]),
                "{yaml}"
            );
        }
        let runs = expand("d", &base(), &grid("serverAttack: [equivocate]\n")).expect("expands");
        let inject = runs[0].manifest["spec"]["inject"].as_array().expect("list");
        assert_eq!(inject.len(), 2);
        let runs = expand("d", &base(), &grid("workerAttack: [none]\n")).expect("expands");
        assert_eq!(runs[0].manifest["spec"]["inject"], json!([]));
    }

    #[test]
    fn dotted_paths_reach_fields_and_list_items() {
        let runs = expand(
            "d",
            &base(),
            &grid("b: {big: {spec.training.batchSize: 64, spec.inject.0.params: {z: 2}}}\nmodel: [cnn]\n"),
        )
        .expect("expands");
        assert_eq!(runs[0].manifest["spec"]["training"]["batchSize"], 64);
        assert_eq!(runs[0].manifest["spec"]["inject"][0]["params"]["z"], 2);
        assert_eq!(runs[0].manifest["spec"]["model"], json!({"kind": "cnn"}));
    }

    #[test]
    fn bad_axes_are_refused_with_the_axis_named() {
        let (at, message) = check_axes(&grid("colour: [red]\n")).expect_err("unknown key");
        assert_eq!(at, "grid.colour");
        assert!(message.contains("shortcut"), "{message}");
        let (at, _) = check_axes(&grid("s: {a: 3}\n")).expect_err("label not a map");
        assert_eq!(at, "grid.s.a");
        let (at, _) = check_axes(&grid("s: {a: {bogus: 1}}\n")).expect_err("bad override key");
        assert_eq!(at, "grid.s.a.bogus");
        let (at, _) = check_axes(&grid("seed: []\n")).expect_err("empty");
        assert_eq!(at, "grid.seed");
        let error = expand("d", &base(), &grid("fw: [two]\n")).expect_err("not a count");
        assert!(error.to_string().contains("grid.fw = two"), "{error}");
        let no_axes = expand("d", &base(), &Mapping::new()).expect("no grid is one run");
        assert_eq!(no_axes.len(), 1);
    }
}
