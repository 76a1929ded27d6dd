//! The `ByzantineChaos` format: parsing the YAML (and naming the bad field), validation against
//! a job plan, and the seeded, deterministic choice of nodes. Fixtures live in
//! `tests/fixtures/chaos/`.

// Helpers shared by the tests unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, time::Duration};

use byzsgd_api::{
    Manifest, ManifestError,
    chaos::{
        ChaosAction, ChaosDuration, ChaosResource, ChaosSpec, FloodMessage, Selector, SelectorMode,
        select, validate,
    },
};
use byzsgd_core::job::{Plan, Role};

const JOB: &str = "
apiVersion: byzsgd.io/v1alpha1
kind: ByzSGDJob
metadata: {name: chaos-job}
spec:
  model: {kind: logistic}
  dataset: {name: synthetic}
  training: {steps: 100, learningRate: 0.05, seed: 7}
  servers: {replicas: 5, byzantine: 1}
  workers: {replicas: 7, byzantine: 2}
  chaos: {allowed: true}
";

fn plan() -> Plan {
    let manifest = Manifest::parse(JOB, "<job>").unwrap();
    byzsgd_api::validate(&manifest.spec).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/chaos/{name}"))
}

fn spec(selector: Selector, role: Role) -> ChaosSpec {
    ChaosSpec {
        job: "chaos-job".into(),
        role,
        selector,
        action: ChaosAction::Silence,
        window: byzsgd_api::chaos::Window::default(),
        seed: Some(11),
    }
}

#[test]
fn attack_fixture_parses_validates_and_selects_two_workers() {
    let chaos = ChaosResource::from_file(&fixture("alie-workers.yaml")).unwrap();
    assert_eq!(chaos.name, "alie-two-workers");
    assert_eq!(chaos.spec.role, Role::Worker);
    assert_eq!(chaos.spec.selector.mode, SelectorMode::Fixed);
    let ChaosAction::Attack { name, params } = &chaos.spec.action else {
        panic!("expected an attack, got {:?}", chaos.spec.action);
    };
    assert_eq!(name, "alie");
    assert_eq!(params.z, Some(1.5));
    assert!(chaos.spec.window.contains(20) && chaos.spec.window.contains(59));
    assert!(!chaos.spec.window.contains(19) && !chaos.spec.window.contains(60));

    let plan = plan();
    validate(&chaos.spec, "chaos-job", &plan).unwrap();
    let hit = select(&chaos.spec, &plan);
    assert_eq!(hit.len(), 2);
    assert!(hit.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(hit.iter().all(|&index| index < 7));
    // Same seed, same nodes: the operator, the runner and this test agree.
    assert_eq!(select(&chaos.spec, &plan), hit);
}

#[test]
fn delay_fixture_reads_durations_with_units() {
    let chaos = ChaosResource::from_file(&fixture("delay-server.yaml")).unwrap();
    let ChaosAction::Delay { latency, jitter } = chaos.spec.action else {
        panic!("expected a delay, got {:?}", chaos.spec.action);
    };
    assert_eq!(latency.0, Duration::from_millis(50));
    assert_eq!(jitter.0, Duration::from_millis(1500));
    assert_eq!(
        chaos.spec.window.duration.unwrap().0,
        Duration::from_secs(120)
    );
    validate(&chaos.spec, "chaos-job", &plan()).unwrap();
    assert_eq!(select(&chaos.spec, &plan()), vec![1]);
}

#[test]
fn unknown_field_is_rejected_naming_its_path() {
    let error = ChaosResource::from_file(&fixture("typo.yaml")).unwrap_err();
    let ManifestError::Field { field, message, .. } = &error else {
        panic!("expected a field error, got {error}");
    };
    assert_eq!(field, "spec.window.untilSteps");
    assert!(message.contains("untilStep"), "{message}");
}

#[test]
fn wrong_kind_and_bad_duration_name_the_field() {
    let text = std::fs::read_to_string(fixture("alie-workers.yaml")).unwrap();
    let error = ChaosResource::parse(&text.replace("ByzantineChaos", "PodChaos"), "<t>")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("field `kind`") && error.contains("ByzantineChaos"),
        "{error}"
    );

    let text = std::fs::read_to_string(fixture("delay-server.yaml")).unwrap();
    let error = ChaosResource::parse(&text.replace("50ms", "50 parsecs"), "<t>")
        .unwrap_err()
        .to_string();
    // serde buffers an internally tagged enum, so the path stops at the action; the message
    // quotes the bad value and the accepted units.
    assert!(error.contains("field `spec.action`"), "{error}");
    assert!(error.contains("`50 parsecs`"), "{error}");
    assert!(error.contains("`ms`"), "{error}");
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let chaos = ChaosResource::from_file(&fixture("bad-everything.yaml")).unwrap();
    let invalid = validate(&chaos.spec, "chaos-job", &plan()).unwrap_err();
    let fields: Vec<&str> = invalid.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.job",
            "spec.selector.indices",
            "spec.action.name",
            "spec.window.untilStep"
        ],
        "{invalid}"
    );
    let text = invalid.to_string();
    assert!(
        text.contains("index 9 is out of range for 7 workers"),
        "{text}"
    );
    assert!(
        text.contains("unknown worker attack `equivocate`"),
        "{text}"
    );
}

#[test]
fn label_flip_and_bad_params_are_refused_for_run_time_switching() {
    let mut chaos = spec(
        Selector {
            mode: SelectorMode::One,
            ..Selector::default()
        },
        Role::Worker,
    );
    chaos.action = ChaosAction::Attack {
        name: "label-flip".into(),
        params: byzsgd_core::attack::AttackParams::default(),
    };
    let text = validate(&chaos, "chaos-job", &plan())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("spec.action.name") && text.contains("spec.inject"),
        "{text}"
    );

    chaos.action = ChaosAction::Attack {
        name: "reverse".into(),
        params: byzsgd_core::attack::AttackParams {
            scale: Some(1.0),
            ..Default::default()
        },
    };
    let text = validate(&chaos, "chaos-job", &plan())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("spec.action.params") && text.contains("scale"),
        "{text}"
    );
}

#[test]
fn selector_modes_hit_the_documented_number_of_nodes() {
    let plan = plan();
    let count = |mode, value, indices: Option<Vec<usize>>, role| {
        let chaos = spec(
            Selector {
                mode,
                value,
                indices,
            },
            role,
        );
        validate(&chaos, "chaos-job", &plan).unwrap();
        select(&chaos, &plan)
    };
    assert_eq!(count(SelectorMode::One, None, None, Role::Server).len(), 1);
    assert_eq!(
        count(SelectorMode::All, None, None, Role::Worker),
        (0..7).collect::<Vec<_>>()
    );
    assert_eq!(
        count(SelectorMode::Fixed, Some(3), None, Role::Worker).len(),
        3
    );
    // ⌊7 × 50 / 100⌋ = 3, rounded down as Chaos Mesh does.
    assert_eq!(
        count(SelectorMode::FixedPercent, Some(50), None, Role::Worker).len(),
        3
    );
    assert_eq!(
        count(SelectorMode::FixedPercent, Some(10), None, Role::Worker).len(),
        0
    );
    assert_eq!(
        count(SelectorMode::Indices, None, Some(vec![4, 0]), Role::Server),
        vec![0, 4]
    );
}

#[test]
fn seeds_change_the_choice_and_the_job_seed_is_the_default() {
    let plan = plan();
    let mut chaos = spec(
        Selector {
            mode: SelectorMode::Fixed,
            value: Some(3),
            indices: None,
        },
        Role::Worker,
    );
    let choices: std::collections::BTreeSet<Vec<usize>> = (0..20)
        .map(|seed| {
            chaos.seed = Some(seed);
            select(&chaos, &plan)
        })
        .collect();
    assert!(choices.len() > 1, "20 seeds all chose the same nodes");
    chaos.seed = Some(7);
    let with_job_seed = select(&chaos, &plan);
    chaos.seed = None;
    assert_eq!(select(&chaos, &plan), with_job_seed);
}

#[test]
fn selector_values_are_checked_against_the_job() {
    let plan = plan();
    let problems = |mode, value, indices| {
        let chaos = spec(
            Selector {
                mode,
                value,
                indices,
            },
            Role::Server,
        );
        validate(&chaos, "chaos-job", &plan)
            .map_err(|invalid| invalid.to_string())
            .unwrap_err()
    };
    assert!(problems(SelectorMode::Fixed, Some(6), None).contains("1..=5"));
    assert!(problems(SelectorMode::Fixed, None, None).contains("needs a value"));
    assert!(problems(SelectorMode::FixedPercent, Some(101), None).contains("0..=100"));
    assert!(problems(SelectorMode::All, Some(1), None).contains("takes no value"));
    assert!(problems(SelectorMode::Indices, None, Some(vec![2, 2])).contains("twice"));
    assert!(problems(SelectorMode::Indices, None, None).contains("needs indices"));
}

#[test]
fn windows_must_be_sane() {
    let plan = plan();
    let mut chaos = spec(Selector::default(), Role::Worker);
    chaos.window.from_step = 100;
    let text = validate(&chaos, "chaos-job", &plan)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("spec.window.fromStep") && text.contains("below 100"),
        "{text}"
    );
    chaos.window.from_step = 10;
    chaos.window.until_step = Some(20);
    chaos.window.duration = Some("30s".parse::<ChaosDuration>().unwrap());
    let text = validate(&chaos, "chaos-job", &plan)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("spec.window.duration") && text.contains("not both"),
        "{text}"
    );
}

#[test]
fn partition_peers_must_exist() {
    let plan = plan();
    let mut chaos = spec(Selector::default(), Role::Server);
    chaos.action = ChaosAction::Partition {
        peers: vec!["server-4".into(), "worker-7".into(), "node-1".into()],
    };
    let invalid = validate(&chaos, "chaos-job", &plan).unwrap_err();
    let fields: Vec<&str> = invalid.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["spec.action.peers[1]", "spec.action.peers[2]"]);
}

#[test]
fn a_flood_names_a_node_of_the_job_and_defaults_to_max_size_messages() {
    let plan = plan();
    let mut chaos = spec(Selector::default(), Role::Worker);
    chaos.action = ChaosAction::Flood {
        target: "server-9".into(),
        message: FloodMessage::default(),
    };
    let invalid = validate(&chaos, "chaos-job", &plan).unwrap_err();
    let fields: Vec<&str> = invalid.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["spec.action.target"]);
    chaos.action = ChaosAction::Flood {
        target: "server-0".into(),
        message: FloodMessage::default(),
    };
    assert!(validate(&chaos, "chaos-job", &plan).is_ok());
    let parsed: ChaosAction = serde_yaml_ng::from_str("{kind: flood, target: server-1}").unwrap();
    assert_eq!(
        parsed,
        ChaosAction::Flood {
            target: "server-1".into(),
            message: FloodMessage::MaxSize
        }
    );
}

#[test]
fn durations_parse_with_units_and_refuse_nonsense() {
    let parse = |text: &str| text.parse::<ChaosDuration>().map(|d| d.0);
    assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse("1.5m"), Ok(Duration::from_secs(90)));
    assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    for bad in ["", "10", "ms", "-1s", "1d", "1.2.3s"] {
        assert!(parse(bad).is_err(), "`{bad}` parsed");
    }
}

#[test]
fn chaos_is_off_unless_the_job_allows_it() {
    let manifest = Manifest::parse(&JOB.replace("  chaos: {allowed: true}\n", ""), "<t>").unwrap();
    assert!(!manifest.spec.chaos.allowed);
    assert!(Manifest::parse(JOB, "<t>").unwrap().spec.chaos.allowed);
}

/// The shipped examples (`examples/chaos/`) parse and fit the job beside them, so the README's
/// commands work as written.
#[test]
fn the_chaos_examples_fit_their_job() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/chaos");
    let manifest = Manifest::from_file(&examples.join("job.yaml")).unwrap();
    let plan = byzsgd_api::validate(&manifest.spec).unwrap();
    assert!(plan.spec.chaos.allowed);
    for file in ["alie-workers.yaml", "slow-server.yaml"] {
        let chaos = ChaosResource::from_file(&examples.join(file)).unwrap();
        validate(&chaos.spec, &manifest.name, &plan)
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        assert!(
            !select(&chaos.spec, &plan).is_empty(),
            "{file} selects nodes"
        );
    }
}
