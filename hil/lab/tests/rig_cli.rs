//! `keybound-lab run --target rig:example` end to end, with no hardware: the committed template
//! rig (fake GPIO) and a committed scenario that moves a Zymkey. The run must report the skip
//! with the reason, exit 0 (skips do not fail a rig run) and switch nothing.

use std::path::Path;
use std::process::Command;

#[test]
fn a_rig_run_reports_a_zymkey_move_as_skipped_with_the_reason() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keybound-lab"))
        .arg("--repo")
        .arg(&repo)
        .args(["run", "--target", "rig:example"])
        .arg(repo.join("scenarios/attacks/zymkey-moved-production-refuses.toml"))
        .arg("--report")
        .arg(report.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 passed, 0 failed, 1 skipped"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path().join("results.json")).unwrap())
            .unwrap();
    let scenario = &results[0];
    assert_eq!(scenario["target"], "rig:example");
    assert_eq!(scenario["verdict"]["status"], "skip", "{scenario:#}");
    let moved = scenario["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["text"]
                .as_str()
                .unwrap_or_default()
                .contains("move the Zymkey")
        })
        .unwrap_or_else(|| panic!("no zymkey-move step: {scenario:#}"));
    assert_eq!(moved["verdict"]["status"], "skip");
    let reason = moved["verdict"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("zymkey-move") && reason.contains("real Zymkey"),
        "{reason}"
    );
    // Pre-flight skipped it: no board was set up.
    assert_eq!(scenario["boards"].as_array().map(Vec::len), Some(0));
}
