//! `crds/` holds exactly what the API types generate: a doc comment or a field changed in
//! `byzsgd-api` (or in the core spec types it embeds) without regenerating the CRDs fails here,
//! naming the command that fixes it. (`operator/tests/chart.rs` keeps the chart's copies equal
//! to `crds/`.)

use std::path::Path;

#[test]
fn committed_crds_are_the_generated_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for (file, generated) in byzsgd_api::crd::crd_files().expect("the CRDs render") {
        let path = dir.join(file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        assert!(
            committed == generated,
            "{} differs from what the API types generate; regenerate with \
             `cargo run -p byzsgd-operator -- crd --out-dir crds` and copy the files to \
             charts/byzsgd-operator/crds/",
            path.display()
        );
    }
}
