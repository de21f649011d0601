//! `rotate` on image files (offline re-encryption; the online path runs in the guest, see
//! bins/admin/tests/qemu_recovery.rs): a new volume key, a new recovery secret, the sealed
//! slot's volume check re-sealed; the old recovery secret and the old volume key stop opening
//! the volume.

mod common;

use std::path::Path;

use common::{Module, cli_test_passphrase, fresh_volume, vendor};
use sealed_root::{
    ROTATION_TOKEN, RecoveryKdf, decrypt_recovery, enroll, finish_rotation, read_tokens,
    recovery_ciphertext, rotate, unseal,
};

const FAST: RecoveryKdf = RecoveryKdf::ReducedForTests;

/// Bytes of the data area (after the 16 MiB LUKS2 header area), to see that it was re-encrypted.
fn data_sample(img: &Path) -> Vec<u8> {
    let all = std::fs::read(img).unwrap();
    all[16 << 20..(16 << 20) + 65536].to_vec()
}

/// `cryptsetup open --test-passphrase --volume-key-file` accepts `key` for `img`'s data.
fn volume_key_opens(img: &Path, dir: &Path, key: &[u8]) -> bool {
    let file = dir.join("vk-probe");
    std::fs::write(&file, key).unwrap();
    let ok = std::process::Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--volume-key-file"])
        .arg(&file)
        .arg(img)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    std::fs::remove_file(&file).unwrap();
    ok
}

#[test]
fn rotation_replaces_volume_key_and_recovery_secret_and_reseals_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, old_vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (identity, recipient) = vendor();
    enroll(&img, &old_vk, &zk, &recipient, FAST).unwrap();
    let old_secret = decrypt_recovery(&recovery_ciphertext(&img).unwrap(), &identity).unwrap();
    let old_tokens = read_tokens(&img).unwrap();
    let (_, old_rec) = old_tokens.recovery.clone().unwrap();
    let data_before = data_sample(&img);
    assert!(volume_key_opens(&img, tmp.path(), old_vk.expose_secret()));

    let r = rotate(&img, None, &zk, &recipient, FAST, None).unwrap();
    assert!(!r.online);
    assert_eq!(r.removed_keyslots, vec![0, 1], "{r:?}");

    // The tokens name the new keyslots; the header has exactly those two.
    let tokens = read_tokens(&img).unwrap();
    assert_eq!(tokens.zymkey.as_ref().unwrap().1.keyslot, r.sealed_keyslot);
    assert_eq!(
        tokens.recovery.as_ref().unwrap().1.keyslot,
        r.recovery_keyslot
    );
    let header = sealed_root::Luks2::open(&img)
        .unwrap()
        .header_json()
        .unwrap();
    assert_eq!(header["keyslots"].as_object().unwrap().len(), 2, "{header}");
    assert_eq!(header["digests"].as_object().unwrap().len(), 1, "{header}");
    assert!(header["config"]["requirements"].is_null(), "{header}");
    // Sealed slot minimal PBKDF2, recovery slot argon2id, as at enrolment.
    let ks = |n: u32| header["keyslots"][n.to_string()]["kdf"]["type"].clone();
    assert_eq!(ks(r.sealed_keyslot), "pbkdf2");
    assert_eq!(ks(r.recovery_keyslot), "argon2id");

    // The Zymkey still unseals and the re-sealed volume check matches the new key.
    unseal(&img, &zk).unwrap().verify_volume(&img).unwrap();
    // The old volume key and the old recovery secret open nothing; the data was rewritten.
    assert!(!volume_key_opens(&img, tmp.path(), old_vk.expose_secret()));
    assert!(!cli_test_passphrase(
        &img,
        old_rec.keyslot,
        old_secret.to_typable().as_bytes()
    ));
    assert!(!cli_test_passphrase(
        &img,
        r.recovery_keyslot,
        old_secret.to_typable().as_bytes()
    ));
    assert_ne!(data_sample(&img), data_before);
    // The vendor's identity decrypts the new secret, which opens the new recovery slot.
    let new_secret = decrypt_recovery(&recovery_ciphertext(&img).unwrap(), &identity).unwrap();
    assert_ne!(new_secret.expose_secret(), old_secret.expose_secret());
    assert!(cli_test_passphrase(
        &img,
        r.recovery_keyslot,
        new_secret.to_typable().as_bytes()
    ));
}

#[test]
fn rotation_refuses_a_board_whose_zymkey_does_not_unseal() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let other = Module::start("board-1", "card-1");
    let (_, recipient) = vendor();
    enroll(&img, &vk, &m.open(), &recipient, FAST).unwrap();
    let tokens = read_tokens(&img).unwrap();
    let header = std::fs::read(&img).unwrap()[..16 << 20].to_vec();
    let err = rotate(&img, None, &other.open(), &recipient, FAST, None).unwrap_err();
    assert!(err.to_string().contains("Zymkey"), "{err}");
    // Nothing was written.
    assert_eq!(read_tokens(&img).unwrap(), tokens);
    assert_eq!(std::fs::read(&img).unwrap()[..16 << 20], header[..]);
}

fn header(img: &Path) -> serde_json::Value {
    sealed_root::Luks2::open(img)
        .unwrap()
        .header_json()
        .unwrap()
}

#[test]
fn an_interrupted_rotation_is_finished_with_the_zymkey_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, old_vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (identity, recipient) = vendor();
    enroll(&img, &old_vk, &zk, &recipient, FAST).unwrap();
    let old_secret = decrypt_recovery(&recovery_ciphertext(&img).unwrap(), &identity).unwrap();

    // Stop after the first progress report: the state a power cut between two hot zones
    // leaves (checksum resilience), with the rotation's record in the header.
    let mut calls = 0;
    let mut stop = |done: u64, total: u64| {
        calls += 1;
        assert!(done <= total);
        false
    };
    let err = rotate(&img, None, &zk, &recipient, FAST, Some(&mut stop)).unwrap_err();
    assert!(err.to_string().contains("stopped before the end"), "{err}");
    assert!(calls >= 1);
    let h = header(&img);
    assert!(
        h["config"]["requirements"]["mandatory"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x.as_str().unwrap().contains("reencrypt"))),
        "{h}"
    );
    assert!(
        h["tokens"]
            .as_object()
            .unwrap()
            .values()
            .any(|t| t["type"] == ROTATION_TOKEN),
        "{h}"
    );

    // Finishing needs nothing but the board's Zymkey.
    let mut seen = Vec::new();
    let mut watch = |done: u64, _total: u64| {
        seen.push(done);
        true
    };
    let r = finish_rotation(&img, None, &zk, Some(&mut watch))
        .unwrap()
        .expect("a rotation under way");
    assert!(r.resumed && !r.online, "{r:?}");
    assert!(!seen.is_empty());
    let h = header(&img);
    assert!(h["config"]["requirements"].is_null(), "{h}");
    assert_eq!(h["keyslots"].as_object().unwrap().len(), 2, "{h}");
    assert!(
        h["tokens"]
            .as_object()
            .unwrap()
            .values()
            .all(|t| t["type"] != ROTATION_TOKEN),
        "{h}"
    );
    let tokens = read_tokens(&img).unwrap();
    assert_eq!(tokens.zymkey.unwrap().1.keyslot, r.sealed_keyslot);
    assert_eq!(tokens.recovery.unwrap().1.keyslot, r.recovery_keyslot);
    unseal(&img, &zk).unwrap().verify_volume(&img).unwrap();
    assert!(!volume_key_opens(&img, tmp.path(), old_vk.expose_secret()));
    assert!(!cli_test_passphrase(
        &img,
        r.recovery_keyslot,
        old_secret.to_typable().as_bytes()
    ));
    let new_secret = decrypt_recovery(&recovery_ciphertext(&img).unwrap(), &identity).unwrap();
    assert!(cli_test_passphrase(
        &img,
        r.recovery_keyslot,
        new_secret.to_typable().as_bytes()
    ));
    // Nothing left to finish; a new rotation starts from scratch.
    assert_eq!(finish_rotation(&img, None, &zk, None).unwrap(), None);
    let again = rotate(&img, None, &zk, &recipient, FAST, None).unwrap();
    assert!(!again.resumed);
    unseal(&img, &zk).unwrap().verify_volume(&img).unwrap();
}

#[test]
fn a_malformed_rotation_token_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (_, recipient) = vendor();
    enroll(&img, &vk, &zk, &recipient, FAST).unwrap();
    let token = tmp.path().join("t.json");
    std::fs::write(
        &token,
        r#"{"type":"keybound-rotation","keyslots":[],"version":1,"sealed-keyslot":5,"recovery-keyslot":6,"sealed-blob":"AAAA","age-ciphertext":"AAAA","skip":true}"#,
    )
    .unwrap();
    let out = std::process::Command::new("cryptsetup")
        .args(["token", "import", "--json-file"])
        .arg(&token)
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let before = std::fs::read(&img).unwrap()[..16 << 20].to_vec();
    let err = rotate(&img, None, &zk, &recipient, FAST, None).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap()[..16 << 20], before[..]);
}
