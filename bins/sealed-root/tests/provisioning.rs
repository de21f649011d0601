//! What first-boot provisioning uses beyond enrolment, on image files with the real Zymkey
//! stack: the online-reencrypt requirement, the temporary keyslot's volume key, discarding a
//! half-written enrolment, re-enrolment keeping the volume key. (The Pi 4 profile's Adiantum
//! cipher is checked in the guest: this host's kernel has no adiantum, and formatting checks
//! the cipher in the kernel.)

mod common;

use std::path::Path;
use std::process::Command;

use common::{Module, fresh_volume, image, luks_dump, vendor};
use sealed_root::{
    Luks2, RecoveryKdf, discard_partial_enrolment, enroll, re_enroll, read_tokens,
    reencrypt_pending, unseal, volume_key_from_keyslot,
};

const FAST: RecoveryKdf = RecoveryKdf::ReducedForTests;

fn cryptsetup(args: &[&str], img: &Path, key_file: &Path) {
    let out = Command::new("cryptsetup")
        .args(args)
        .arg("--key-file")
        .arg(key_file)
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cryptsetup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_interrupted_reencryption_is_seen_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "root.img", 40);
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "temporary-passphrase").unwrap();
    let fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
    let mut format = vec!["luksFormat", "-q", "--type", "luks2"];
    format.extend(fast);
    cryptsetup(&format, &img, &pass);
    assert!(!reencrypt_pending(&img).unwrap());

    // Reencryption initialised, not run: what a power cut mid-way leaves in the header.
    let mut init = vec![
        "reencrypt",
        "--init-only",
        "--batch-mode",
        "--force-offline-reencrypt",
    ];
    init.extend(fast);
    cryptsetup(&init, &img, &pass);
    assert!(reencrypt_pending(&img).unwrap());
    assert!(luks_dump(&img).contains("online-reencrypt"));

    cryptsetup(
        &[
            "reencrypt",
            "--resume-only",
            "--batch-mode",
            "--force-offline-reencrypt",
        ],
        &img,
        &pass,
    );
    assert!(!reencrypt_pending(&img).unwrap());
    // Re-encryption moved the passphrase to a keyslot of the new volume key.
    let header = Luks2::open(&img).unwrap().header_json().unwrap();
    let keyslot: u32 = header["keyslots"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let vk = volume_key_from_keyslot(&img, keyslot, b"temporary-passphrase")
        .unwrap()
        .expect("the temporary keyslot opens");
    assert_eq!(vk.expose_secret().len(), 64);
    assert!(
        volume_key_from_keyslot(&img, 0, b"wrong")
            .unwrap()
            .is_none()
    );
    assert!(
        volume_key_from_keyslot(&img, 5, b"temporary-passphrase")
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_half_written_enrolment_is_discarded_down_to_the_temporary_keyslot() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (_, recipient) = vendor();
    // The temporary keyslot first (as the encryption makes it), then an enrolment.
    {
        let pass = tmp.path().join("pass");
        std::fs::write(&pass, "temporary").unwrap();
        let vk_file = tmp.path().join("vk");
        std::fs::write(&vk_file, vk.expose_secret()).unwrap();
        let out = Command::new("cryptsetup")
            .args(["luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2"])
            .args(["--pbkdf-force-iterations", "1000", "--new-key-slot", "0"])
            .args(["--key-size", "512"])
            .arg("--volume-key-file")
            .arg(&vk_file)
            .arg(&img)
            .arg(&pass)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let e = enroll(&img, &vk, &zk, &recipient, FAST).unwrap();
    assert!(e.sealed_keyslot != 0 && e.recovery_keyslot != 0);

    discard_partial_enrolment(&img, 0).unwrap();
    let tokens = read_tokens(&img).unwrap();
    assert!(tokens.zymkey.is_none() && tokens.recovery.is_none());
    let header = Luks2::open(&img).unwrap().header_json().unwrap();
    let keyslots: Vec<&String> = header["keyslots"].as_object().unwrap().keys().collect();
    assert_eq!(keyslots, ["0"], "{header}");
    // The temporary keyslot still opens, and enrolment can run again.
    assert!(
        volume_key_from_keyslot(&img, 0, b"temporary")
            .unwrap()
            .is_some()
    );
    enroll(&img, &vk, &zk, &recipient, FAST).unwrap();
}

#[test]
fn re_enrolment_keeps_the_volume_key_and_retires_both_old_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (old_vendor, old_recipient) = vendor();
    let (new_vendor, new_recipient) = vendor();
    let old = enroll(&img, &vk, &zk, &old_recipient, FAST).unwrap();
    let old_tokens = read_tokens(&img).unwrap();
    let old_unsealed = unseal(&img, &zk).unwrap();
    let old_recovery = sealed_root::decrypt_recovery(
        &old_tokens.recovery.as_ref().unwrap().1.age_ciphertext,
        &old_vendor,
    )
    .unwrap();

    let new = re_enroll(&img, &old_unsealed, &zk, &new_recipient, FAST).unwrap();
    let tokens = read_tokens(&img).unwrap();
    assert_eq!(
        tokens.zymkey.as_ref().unwrap().1.keyslot,
        new.sealed_keyslot
    );
    assert_eq!(
        tokens.recovery.as_ref().unwrap().1.keyslot,
        new.recovery_keyslot
    );
    assert_ne!(
        tokens.zymkey.as_ref().unwrap().1.sealed_blob,
        old_tokens.zymkey.as_ref().unwrap().1.sealed_blob
    );

    // The new sealed secret unseals, verifies, and opens the same volume key.
    let unsealed = unseal(&img, &zk).unwrap();
    unsealed.verify_volume(&img).unwrap();
    // The old secrets open nothing any more.
    let mut luks = Luks2::open(&img).unwrap();
    for keyslot in [old.sealed_keyslot, old.recovery_keyslot] {
        if keyslot == new.sealed_keyslot || keyslot == new.recovery_keyslot {
            continue;
        }
        assert!(
            luks.require_luks2_keyslot(keyslot).is_err(),
            "old keyslot {keyslot} kept"
        );
    }
    for (what, pass) in [
        ("old sealed secret", old_unsealed.passphrase().to_vec()),
        (
            "old recovery secret",
            old_recovery.to_typable().as_bytes().to_vec(),
        ),
    ] {
        for keyslot in [new.sealed_keyslot, new.recovery_keyslot] {
            assert!(!luks.test_passphrase(keyslot, &pass).unwrap(), "{what}");
        }
    }
    // The new recovery secret is the new vendor's and opens the same volume key.
    let recovery = sealed_root::decrypt_recovery(
        &tokens.recovery.as_ref().unwrap().1.age_ciphertext,
        &new_vendor,
    )
    .unwrap();
    let key = volume_key_from_keyslot(&img, new.recovery_keyslot, recovery.to_typable().as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(key.expose_secret(), vk.expose_secret());
}
