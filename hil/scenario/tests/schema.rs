//! scenarios/schema.json is what the types generate (editors complete against it). Regenerate
//! with `KEYBOUND_UPDATE_SCHEMA=1 cargo test -p scenario --test schema`.

use std::path::Path;

#[test]
fn the_committed_json_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/schema.json");
    let generated = format!("{:#}\n", scenario::Scenario::json_schema());
    if std::env::var_os("KEYBOUND_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "scenarios/schema.json is stale: run KEYBOUND_UPDATE_SCHEMA=1 cargo test -p scenario --test schema"
    );
}

#[test]
fn the_schema_describes_every_step_and_expectation() {
    let schema = scenario::Scenario::json_schema().to_string();
    for kind in scenario::ActionKind::ALL {
        assert!(
            schema.contains(&format!("\"const\":\"{}\"", kind.name())),
            "{kind} missing"
        );
    }
    for kind in scenario::ExpectKind::ALL {
        assert!(
            schema.contains(&format!("\"{}\"", kind.name())),
            "{kind} missing"
        );
    }
}
