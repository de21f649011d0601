//! `keybound rotate --device IMG` on an image file (offline re-encryption; the online path runs
//! in the guest, tests/qemu_recovery.rs), through the real Zymkey stack: progress on stderr, the
//! summary on stdout, the old recovery secret dead afterwards, and clear errors.

#[path = "../../sealed-root/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Module, cli_test_passphrase, fresh_volume, vendor};
use sealed_root::{RecoveryKdf, decrypt_recovery, enroll, read_tokens, recovery_ciphertext};

fn keybound_rotate(device: &Path, module: &Module, recipient: &str) -> Output {
    let lib_dir = zymkey_testkit::library_path()
        .parent()
        .unwrap()
        .to_path_buf();
    Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["rotate", "--recipient", recipient, "--device"])
        .arg(device)
        .env("KEYBOUND_ZK_SOCKET", module.socket())
        .env("LD_LIBRARY_PATH", lib_dir)
        .output()
        .unwrap()
}

#[test]
fn rotate_offline_on_an_image_replaces_the_recovery_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let (identity, recipient) = vendor();
    enroll(
        &img,
        &vk,
        &m.open(),
        &recipient,
        RecoveryKdf::ReducedForTests,
    )
    .unwrap();
    let old = decrypt_recovery(&recovery_ciphertext(&img).unwrap(), &identity).unwrap();

    let out = keybound_rotate(&img, &m, &recipient.to_string());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("offline (not open)"), "{stderr}");
    assert!(stderr.contains("re-encrypted 100%"), "{stderr}");
    assert!(
        stdout.contains("new volume key (offline)")
            && stdout.contains("old keyslots 0, 1 destroyed")
            && stdout.contains("volume check verified"),
        "{stdout}"
    );
    let (_, rec) = read_tokens(&img).unwrap().recovery.unwrap();
    assert!(!cli_test_passphrase(
        &img,
        rec.keyslot,
        old.to_typable().as_bytes()
    ));
    let new = decrypt_recovery(&recovery_ciphertext(&img).unwrap(), &identity).unwrap();
    assert!(cli_test_passphrase(
        &img,
        rec.keyslot,
        new.to_typable().as_bytes()
    ));
    // The production recovery KDF (argon2id) on the new recovery slot.
    let json = sealed_root::Luks2::open(&img)
        .unwrap()
        .header_json()
        .unwrap();
    assert_eq!(
        json["keyslots"][rec.keyslot.to_string()]["kdf"]["type"],
        "argon2id"
    );
    // No secret in the output.
    for text in [&stdout, &stderr] {
        assert!(!text.contains(&new.to_typable()[..14]), "{text}");
    }
}

#[test]
fn rotate_names_a_bad_recipient_and_another_module() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
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
    let tokens = read_tokens(&img).unwrap();

    let out = keybound_rotate(&img, &m, "age1notarecipient");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--recipient: not an age X25519 recipient"),
        "{err}"
    );

    let other = Module::start("board-1", "card-1");
    let out = keybound_rotate(&img, &other, &recipient.to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("keybound rotate:") && err.contains("Zymkey"),
        "{err}"
    );
    assert_eq!(read_tokens(&img).unwrap(), tokens, "nothing written");
}
