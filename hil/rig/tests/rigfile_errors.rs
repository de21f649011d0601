//! Broken rig files are rejected before anything is switched, each problem naming the file, the
//! line and column, and the field (snapshots of the short and the rendered form).

use std::path::Path;

fn problems(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let shown = Path::new("rigs").join(name);
    match rig::RigFile::parse(&shown, &text) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => format!("{}\n\n{}", e.short(), e.render(false)),
    }
}

macro_rules! fixture {
    ($test:ident, $file:literal) => {
        #[test]
        fn $test() {
            insta::assert_snapshot!(problems($file));
        }
    };
}

fixture!(an_unknown_field_suggests_the_closest, "unknown-field.toml");
fixture!(a_bad_polarity_names_the_choices, "bad-polarity.toml");
fixture!(a_command_needs_its_placeholder, "no-placeholder.toml");
fixture!(an_address_needs_a_port, "bad-address.toml");
fixture!(power_must_be_stated, "power-missing.toml");
fixture!(power_is_none_or_a_relay, "power-off-word.toml");
fixture!(two_resources_on_one_line_are_refused, "line-twice.toml");
fixture!(a_bad_duration_names_the_units, "bad-duration.toml");
fixture!(
    a_maintenance_channel_needs_a_host_key,
    "maintenance-no-host-key.toml"
);
fixture!(an_unknown_model_suggests_the_closest, "unknown-model.toml");

#[test]
fn a_missing_file_is_named() {
    let e = rig::RigFile::load(Path::new("/nonexistent/rigs/lab.toml")).unwrap_err();
    assert!(
        e.short()
            .starts_with("/nonexistent/rigs/lab.toml:1:1: cannot read"),
        "{}",
        e.short()
    );
}
