//! Every committed scenario is valid, and says in words what it does (snapshots).

use std::path::{Path, PathBuf};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

#[test]
fn every_committed_scenario_is_valid_and_explained() {
    let root = scenarios_dir();
    let files = scenario::discover(std::slice::from_ref(&root)).unwrap();
    assert!(files.len() >= 5, "scenarios/ holds {} files", files.len());
    for file in files {
        let loaded = scenario::load(&file, &root).unwrap_or_else(|e| panic!("{}", e.short()));
        insta::assert_snapshot!(
            loaded.name.replace('/', "__"),
            scenario::explain::explain(&loaded.scenario)
        );
    }
}
