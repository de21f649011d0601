//! `keybound status --device IMG` on a fixture card: a LUKS2 image made with libcryptsetup and
//! enrolled through the real Zymkey stack. The JSON is pinned (UUIDs redacted); the text form
//! names the same facts.

#[path = "../../sealed-root/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::{Module, fresh_volume, vendor};
use sealed_root::{RecoveryKdf, enroll};
use serde_json::Value;

fn status(args: &[&str], device: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .arg("status")
        .args(args)
        .arg("--device")
        .arg(device)
        .output()
        .expect("running keybound");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fixture_card_with_key(dir: &Path) -> (std::path::PathBuf, sealed_root::VolumeKey) {
    let (img, vk) = fresh_volume(dir, "card-root.img");
    let m = Module::start("board-1", "card-1");
    let (_, recipient) = vendor();
    enroll(
        &img,
        &vk,
        &m.open(),
        &recipient,
        RecoveryKdf::ReducedForTests,
    )
    .unwrap();
    (img, vk)
}

fn fixture_card(dir: &Path) -> std::path::PathBuf {
    fixture_card_with_key(dir).0
}

#[test]
fn status_json_of_a_fixture_card() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fixture_card(tmp.path());
    let mut json: Value = serde_json::from_str(&status(&["--json"], &img)).unwrap();
    let uuid = json["volume"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 36, "{json}");
    json["volume"]["uuid"] = "[uuid]".into();
    json["volume"]["device"] = "[card-root.img]".into();
    insta::assert_json_snapshot!("status_fixture_card", json);
}

#[test]
fn status_text_of_a_fixture_card() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fixture_card(tmp.path());
    let text = status(&[], &img);
    for want in [
        "cipher:       aes-xts-plain64, 512-bit volume key",
        "keyslot 0:    sealed (pbkdf2, 1000 iterations)",
        "keyslot 1:    recovery (argon2id",
        "keybound-zymkey present, keybound-recovery present",
        "binding:      zymkey+recovery",
        "signed boot:  no",
        "against card theft only",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn status_reports_a_foreign_keyslot_as_weakened() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fixture_card_with_key(tmp.path());
    let json: Value = serde_json::from_str(&status(&["--json"], &img)).unwrap();
    assert_eq!(json["protection"]["level"], "card-theft-only", "{json}");
    // A passphrase slot added beside keybound's (as someone holding the volume key could).
    let vk_file = tmp.path().join("vk");
    let key = tmp.path().join("k");
    std::fs::write(&vk_file, vk.expose_secret()).unwrap();
    std::fs::write(&key, b"a-passphrase").unwrap();
    let out = Command::new("cryptsetup")
        .args(["luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2"])
        .args(["--pbkdf-force-iterations", "1000", "--volume-key-file"])
        .arg(&vk_file)
        .arg(&img)
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_str(&status(&["--json"], &img)).unwrap();
    assert_eq!(json["protection"]["level"], "weakened", "{json}");
    assert_eq!(json["volume"]["keyslots"][2]["role"], "other", "{json}");
    let text = status(&[], &img);
    assert!(text.contains("keyslot 2 is not keybound's"), "{text}");
}

#[test]
fn status_of_something_that_is_not_luks2_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let img = common::image(tmp.path(), "zeros.img", 4);
    let out = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["status", "--device"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zeros.img") && err.contains("LUKS2"), "{err}");
}
