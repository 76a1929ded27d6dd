//! The workspace's architecture, checked: crates depend on each other only downwards
//! (core ← api ← node, operator ← experiments; the operator never on the node), and inside
//! each crate a module imports only modules declared before it in the crate's `lib.rs`, whose
//! `mod` order is therefore the layering, bottom first. A new import cycle fails here with the
//! two modules named, instead of silently growing.
//!
//! It lives in `byzsgd-core` because core is the bottom of the workspace; it reads the other
//! crates' sources and manifests as text and links none of them.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Every crate, with the workspace crates it may depend on (normal dependencies).
const CRATES: [(&str, &[&str]); 6] = [
    ("core", &[]),
    ("api", &["byzsgd-core"]),
    ("node", &["byzsgd-core", "byzsgd-api"]),
    ("operator", &["byzsgd-core", "byzsgd-api"]),
    ("experiments", &["byzsgd-core", "byzsgd-api", "byzsgd-node"]),
    // Test-only; it drives the binaries and images as a user would and links none of them.
    ("e2e", &["byzsgd-core", "byzsgd-api"]),
];

/// Crates the algorithm must never pull in.
const FORBIDDEN_IN_CORE: [&str; 8] = [
    "tokio",
    "tonic",
    "kube",
    "prometheus",
    "plotters",
    "clap",
    "axum",
    "reqwest",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core sits in the workspace")
        .to_path_buf()
}

/// The `[dependencies]` section's names of a crate's Cargo.toml (not dev or build ones).
fn normal_dependencies(dir: &Path) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let mut names = BTreeSet::new();
    let mut in_dependencies = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies
            && let Some((name, _)) = line.split_once(['=', '.'])
            && !line.starts_with('#')
            && !name.trim().is_empty()
        {
            names.insert(name.trim().to_owned());
        }
    }
    names
}

#[test]
fn crates_depend_only_downwards() {
    let root = workspace();
    for (dir, allowed) in CRATES {
        let dependencies = normal_dependencies(&root.join(dir));
        for dependency in dependencies.iter().filter(|d| d.starts_with("byzsgd-")) {
            assert!(
                allowed.contains(&dependency.as_str()),
                "{dir}/Cargo.toml depends on {dependency}; it may only depend on {allowed:?}"
            );
        }
    }
}

#[test]
fn core_depends_on_no_io_framework() {
    let dependencies = normal_dependencies(&workspace().join("core"));
    for forbidden in FORBIDDEN_IN_CORE {
        assert!(
            !dependencies.contains(forbidden),
            "core/Cargo.toml depends on {forbidden}: the algorithm must not do I/O (move that code to node/)"
        );
    }
}

/// The modules `lib.rs` declares, in order (test-only modules excluded).
fn declared_modules(lib: &str) -> Vec<String> {
    let mut modules = Vec::new();
    let mut test_only = false;
    for line in lib.lines().map(str::trim) {
        if line == "#[cfg(test)]" {
            test_only = true;
            continue;
        }
        let declaration = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "));
        if let Some(name) = declaration.and_then(|rest| rest.strip_suffix(';'))
            && !test_only
        {
            modules.push(name.to_owned());
        }
        if !line.starts_with("#[") {
            test_only = false;
        }
    }
    modules
}

/// The source files of one top-level module: `src/NAME.rs` and everything under `src/NAME/`.
fn module_files(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let mut pending = vec![src.join(module)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The crate-level modules a source file names in code (`crate::NAME`), comments skipped.
fn imported_modules(text: &str, modules: &BTreeSet<&str>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(name.as_str()) {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn modules_import_only_modules_below_them() {
    let root = workspace();
    let mut violations = Vec::new();
    for (dir, _) in CRATES {
        let src = root.join(dir).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
        let order = declared_modules(&lib);
        assert!(!order.is_empty(), "{dir}/src/lib.rs declares no modules");
        let rank: BTreeMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, m)| (m.as_str(), i))
            .collect();
        let names: BTreeSet<&str> = rank.keys().copied().collect();
        for module in &order {
            for file in module_files(&src, module) {
                let text = std::fs::read_to_string(&file).expect("readable source");
                for imported in imported_modules(&text, &names) {
                    if rank[imported.as_str()] > rank[module.as_str()] {
                        violations.push(format!(
                            "{}: module `{module}` imports `{imported}`, which {dir}/src/lib.rs declares after it (above it in the layering)",
                            file.strip_prefix(&root).unwrap_or(&file).display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "import cycles or upward imports:\n  {}\nmove the shared part down, or reorder lib.rs if the layering itself is wrong",
        violations.join("\n  ")
    );
}
