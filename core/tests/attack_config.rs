//! Attack names and parameters as users write them: one spelling everywhere (manifest, flag,
//! display, metric label), and parameter checks whose messages name the bad input and the fix.

use byzsgd_core::attack::{
    AttackError, AttackParams, ServerAttack, ServerAttackKind, WorkerAttack, WorkerAttackKind,
};

const WORKER_NAMES: [&str; 16] = [
    "random",
    "reverse",
    "partial-drop",
    "sign-flip",
    "gaussian",
    "alie",
    "foe",
    "mimic",
    "nan",
    "inf",
    "neg-inf",
    "label-flip",
    "min-max",
    "min-sum",
    "optimal-ipm",
    "optimal-alie",
];
const SERVER_NAMES: [&str; 9] = [
    "random",
    "reverse",
    "partial-drop",
    "stale",
    "equivocate",
    "silence",
    "alie",
    "silence-half",
    "dissensus",
];

/// serde, `Display` and `FromStr` agree on every name, and the names are the
/// documented ones (they are part of the manifest and of metric labels).
#[test]
fn worker_attack_names_agree_across_serde_display_and_from_str() {
    let names: Vec<&str> = WorkerAttackKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, WORKER_NAMES);
    for kind in WorkerAttackKind::ALL {
        let name = kind.as_str();
        assert_eq!(kind.to_string(), name);
        assert_eq!(name.parse::<WorkerAttackKind>(), Ok(kind));
        assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
        assert_eq!(
            serde_json::from_str::<WorkerAttackKind>(&format!("\"{name}\"")).unwrap(),
            kind
        );
    }
}

#[test]
fn server_attack_names_agree_across_serde_display_and_from_str() {
    let names: Vec<&str> = ServerAttackKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, SERVER_NAMES);
    for kind in ServerAttackKind::ALL {
        let name = kind.as_str();
        assert_eq!(kind.to_string(), name);
        assert_eq!(name.parse::<ServerAttackKind>(), Ok(kind));
        assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
    }
}

#[test]
fn unknown_attack_names_are_rejected_with_the_valid_list() {
    let error = "little-is-enough".parse::<WorkerAttackKind>().unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("unknown worker attack `little-is-enough`"),
        "{message}"
    );
    for name in WORKER_NAMES {
        assert!(message.contains(name), "{message} does not list {name}");
    }
    let error = "min-max".parse::<ServerAttackKind>().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown server attack `min-max`")
    );
    assert!(error.to_string().contains("equivocate"));
}

#[test]
fn params_read_camel_case_and_default_every_field() {
    let empty: AttackParams = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, AttackParams::default());
    assert!(empty.set_fields().is_empty());

    let params: AttackParams =
        serde_json::from_str(r#"{"z": 1.5, "epsilon": 10, "lag": 4, "target": 2}"#).unwrap();
    assert_eq!(params.z, Some(1.5));
    assert_eq!(params.epsilon, Some(10.0));
    assert_eq!(params.lag_or_default(), 4);
    assert_eq!(params.target_or_default(), 2);
    assert_eq!(params.scale, None);
    // Unset fields are not written back, so a round trip keeps the manifest minimal.
    let written = serde_json::to_string(&params).unwrap();
    assert_eq!(written, r#"{"z":1.5,"epsilon":10.0,"lag":4,"target":2}"#);
}

#[test]
fn params_reject_unknown_fields() {
    let error = serde_json::from_str::<AttackParams>(r#"{"sigma": 2}"#).unwrap_err();
    assert!(error.to_string().contains("sigma"), "{error}");
}

#[test]
fn attacks_deserialize_with_optional_params() {
    let worker: WorkerAttack =
        serde_json::from_str(r#"{"kind": "alie", "params": {"z": 1.0}}"#).unwrap();
    assert_eq!(worker.kind, WorkerAttackKind::Alie);
    assert_eq!(worker.params.z, Some(1.0));
    let server: ServerAttack = serde_json::from_str(r#"{"kind": "silence"}"#).unwrap();
    assert_eq!(server, ServerAttack::new(ServerAttackKind::Silence));
    assert!(serde_json::from_str::<WorkerAttack>(r#"{"kind": "foe", "count": 2}"#).is_err());
}

#[test]
fn default_parameters_validate_for_every_attack() {
    for kind in WorkerAttackKind::ALL {
        assert_eq!(WorkerAttack::new(kind).validate(7, 2), Ok(()), "{kind}");
    }
    for kind in ServerAttackKind::ALL {
        assert_eq!(ServerAttack::new(kind).validate(), Ok(()), "{kind}");
    }
}

/// A knob the attack does not read is most likely a typo for another one.
#[test]
fn a_parameter_the_attack_ignores_is_rejected_naming_what_it_reads() {
    let attack = WorkerAttack {
        kind: WorkerAttackKind::Random,
        params: AttackParams {
            std: Some(2.0),
            ..AttackParams::default()
        },
    };
    let error = attack.validate(7, 2).unwrap_err();
    assert!(matches!(
        error,
        AttackError::UnusedParam { param: "std", .. }
    ));
    let message = error.to_string();
    assert!(
        message.contains("`std`") && message.contains("reads: scale"),
        "{message}"
    );

    let silence = ServerAttack {
        kind: ServerAttackKind::Silence,
        params: AttackParams {
            lag: Some(3),
            ..AttackParams::default()
        },
    };
    assert!(
        silence
            .validate()
            .unwrap_err()
            .to_string()
            .contains("reads: none")
    );
}

#[test]
fn out_of_range_parameters_are_rejected_naming_the_range() {
    let cases = [
        (
            WorkerAttackKind::PartialDrop,
            AttackParams {
                fraction: Some(1.5),
                ..AttackParams::default()
            },
            "fraction",
        ),
        (
            WorkerAttackKind::Random,
            AttackParams {
                scale: Some(-1.0),
                ..AttackParams::default()
            },
            "scale",
        ),
        (
            WorkerAttackKind::Foe,
            AttackParams {
                epsilon: Some(0.0),
                ..AttackParams::default()
            },
            "epsilon",
        ),
        (
            WorkerAttackKind::Alie,
            AttackParams {
                z: Some(f64::NAN),
                ..AttackParams::default()
            },
            "z",
        ),
    ];
    for (kind, params, name) in cases {
        let error = WorkerAttack { kind, params }.validate(7, 2).unwrap_err();
        assert!(
            matches!(error, AttackError::InvalidParam { param, .. } if param == name),
            "{kind}: {error}"
        );
        assert!(error.to_string().contains("it must be"), "{error}");
    }
    let equivocate = ServerAttack {
        kind: ServerAttackKind::Equivocate,
        params: AttackParams {
            strength: Some(f64::INFINITY),
            ..AttackParams::default()
        },
    };
    assert!(equivocate.validate().is_err());
}

/// ALIE needs a finite z: without an explicit one, n and f must define it.
#[test]
fn alie_validation_needs_n_and_f_that_define_z_or_an_explicit_z() {
    let derived = WorkerAttack::new(WorkerAttackKind::Alie);
    let error = derived.validate(7, 4).unwrap_err();
    assert_eq!(error, AttackError::AlieUndefined { n: 7, f: 4 });
    assert!(error.to_string().contains("set `params.z`"), "{error}");
    let explicit = WorkerAttack {
        kind: WorkerAttackKind::Alie,
        params: AttackParams {
            z: Some(1.0),
            ..AttackParams::default()
        },
    };
    assert_eq!(explicit.validate(7, 4), Ok(()));
}

#[test]
fn only_omniscient_attacks_ask_for_the_honest_vectors() {
    let worker: Vec<_> = WorkerAttackKind::ALL
        .into_iter()
        .filter(|k| k.needs_honest())
        .collect();
    assert_eq!(
        worker,
        [
            WorkerAttackKind::SignFlip,
            WorkerAttackKind::Alie,
            WorkerAttackKind::Foe,
            WorkerAttackKind::Mimic,
            WorkerAttackKind::MinMax,
            WorkerAttackKind::MinSum,
            WorkerAttackKind::OptimalIpm,
            WorkerAttackKind::OptimalAlie,
        ]
    );
    let server: Vec<_> = ServerAttackKind::ALL
        .into_iter()
        .filter(|k| k.needs_honest())
        .collect();
    assert_eq!(
        server,
        [
            ServerAttackKind::Equivocate,
            ServerAttackKind::Alie,
            ServerAttackKind::Dissensus
        ]
    );
}
