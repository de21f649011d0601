//! Broken scenario files are rejected before anything boots, each problem at its line and column
//! with a suggestion where one can be made (snapshots of the short and the rendered form).

use std::path::Path;

fn problems(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let shown = Path::new("fixtures").join(name);
    match scenario::parse(&shown, &text) {
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

fixture!(an_unknown_step_suggests_the_closest, "unknown-step.toml");
fixture!(an_unknown_field_points_at_its_key, "unknown-field.toml");
fixture!(a_missing_field_points_at_the_step, "missing-field.toml");
fixture!(a_wrong_type_points_at_the_value, "wrong-type.toml");
fixture!(a_step_without_do_is_named, "missing-do.toml");
fixture!(
    an_unknown_top_level_key_suggests_the_closest,
    "unknown-top-level.toml"
);
fixture!(an_unknown_binding_suggests_the_closest, "bad-binding.toml");
fixture!(
    every_undefined_board_and_token_is_reported,
    "undefined-boards.toml"
);
fixture!(
    an_unknown_expectation_suggests_the_closest,
    "unknown-expectation.toml"
);
fixture!(
    misplaced_expectations_name_the_steps_they_fit,
    "misplaced-expectations.toml"
);
fixture!(bad_regexes_are_caught, "bad-regex.toml");
fixture!(a_bad_duration_names_the_units, "bad-duration.toml");
fixture!(
    dangling_and_duplicate_references_are_caught,
    "references.toml"
);
fixture!(an_expectation_table_has_one_key, "expectation-shape.toml");
fixture!(a_bad_fault_is_refused, "bad-fault.toml");

#[test]
fn line_and_column_are_one_based() {
    assert_eq!(scenario::load::line_col("ab\ncd", 0), (1, 1));
    assert_eq!(scenario::load::line_col("ab\ncd", 4), (2, 2));
}
