//! Format, enrol, tokens, keyslots, unseal, reseal, rotate and the volume check on image files,
//! with Zymkeys reached through the real stack. No device-mapper needed.

mod common;

use common::{Module, cli_test_passphrase, fresh_volume, luks_dump, vendor};
use libcryptsetup_rs::consts::vals::EncryptionFormat;
use libcryptsetup_rs::{CryptInit, TokenInput};
use sealed_root::{Error, Luks2, RecoveryKdf, decrypt_recovery, enroll, read_tokens, unseal};
use serde_json::Value;

/// Every test except the production-defaults one uses the reduced recovery KDF (argon2id still).
const FAST: RecoveryKdf = RecoveryKdf::ReducedForTests;

fn keyslot_json(img: &std::path::Path, keyslot: u32) -> Value {
    Luks2::open(img).unwrap().header_json().unwrap()["keyslots"][keyslot.to_string()].clone()
}

#[test]
fn enrolment_makes_a_sealed_slot_a_recovery_slot_and_two_strict_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (_, recipient) = vendor();

    let e = enroll(&img, &vk, &zk, &recipient, FAST).unwrap();
    assert_ne!(e.sealed_keyslot, e.recovery_keyslot);

    let tokens = read_tokens(&img).unwrap();
    let (zid, z) = tokens.zymkey.clone().unwrap();
    let (rid, r) = tokens.recovery.clone().unwrap();
    assert_eq!((zid, z.keyslot), (e.zymkey_token, e.sealed_keyslot));
    assert_eq!((rid, r.keyslot), (e.recovery_token, e.recovery_keyslot));
    assert!(r.age_ciphertext.starts_with(b"age-encryption.org/v1\n"));

    // Sealed slot: minimal PBKDF2 (full-entropy secret). Recovery slot: argon2id.
    let sealed = keyslot_json(&img, e.sealed_keyslot);
    assert_eq!(sealed["type"], "luks2");
    assert_eq!(sealed["kdf"]["type"], "pbkdf2");
    assert_eq!(sealed["kdf"]["iterations"], 1000);
    let recovery = keyslot_json(&img, e.recovery_keyslot);
    assert_eq!(recovery["kdf"]["type"], "argon2id");
    // The volume key digest (full-entropy key): minimal PBKDF2 too.
    let header = Luks2::open(&img).unwrap().header_json().unwrap();
    assert_eq!(header["digests"]["0"]["type"], "pbkdf2", "{header}");
    assert_eq!(header["digests"]["0"]["iterations"], 1000, "{header}");

    let dump = luks_dump(&img);
    assert!(dump.contains("cipher: aes-xts-plain64"), "{dump}");
    assert!(dump.contains("keybound-zymkey") && dump.contains("keybound-recovery"));

    // A second enrolment is refused; the header is unchanged.
    let again = enroll(&img, &vk, &zk, &recipient, FAST).unwrap_err();
    assert!(again.to_string().contains("already enrolled"), "{again}");
    assert_eq!(read_tokens(&img).unwrap(), tokens);
}

#[test]
fn unsealing_through_the_real_stack_opens_the_sealed_slot_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (_, recipient) = vendor();
    let e = enroll(&img, &vk, &zk, &recipient, FAST).unwrap();

    let u = unseal(&img, &zk).unwrap();
    assert_eq!(u.keyslot(), e.sealed_keyslot);
    assert_eq!(u.passphrase().len(), 32);
    u.verify_volume(&img).unwrap();
    let uuid = Luks2::open(&img).unwrap().uuid().unwrap();
    assert_eq!(u.sealed_check().uuid, uuid);
    u.verify_volume_key(&img, &uuid, &vk).unwrap();
    // cryptsetup itself agrees (open --test-passphrase on that keyslot only).
    assert!(cli_test_passphrase(&img, e.sealed_keyslot, u.passphrase()));
    assert!(!cli_test_passphrase(
        &img,
        e.recovery_keyslot,
        u.passphrase()
    ));
    assert!(!format!("{u:?}").contains(&format!("{:?}", &u.passphrase()[..4])));
}

#[test]
fn another_module_cannot_unseal() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let a = Module::start("board-1", "card-1");
    let b = Module::start("board-1", "card-1");
    let (_, recipient) = vendor();
    enroll(&img, &vk, &a.open(), &recipient, FAST).unwrap();
    let err = unseal(&img, &b.open()).unwrap_err();
    assert!(matches!(err, Error::Zymkey(_)), "{err}");
}

#[test]
fn the_vendor_identity_recovers_a_secret_that_opens_only_the_recovery_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let (identity, recipient) = vendor();
    let e = enroll(&img, &vk, &m.open(), &recipient, FAST).unwrap();

    let ct = sealed_root::recovery_ciphertext(&img).unwrap();
    let secret = decrypt_recovery(&ct, &identity).unwrap();
    let typed = secret.to_typable();
    let mut luks = Luks2::open(&img).unwrap();
    assert!(
        luks.test_passphrase(e.recovery_keyslot, typed.as_bytes())
            .unwrap()
    );
    assert!(
        !luks
            .test_passphrase(e.sealed_keyslot, typed.as_bytes())
            .unwrap()
    );
    assert!(cli_test_passphrase(
        &img,
        e.recovery_keyslot,
        typed.as_bytes()
    ));

    let (other, _) = vendor();
    assert!(matches!(
        decrypt_recovery(&ct, &other),
        Err(Error::AgeDecrypt(_))
    ));
}

#[test]
fn reseal_binds_a_replacement_module_and_retires_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let old = Module::start("board-1", "card-1");
    let new = Module::start("board-1", "card-1");
    let (identity, recipient) = vendor();
    let e = enroll(&img, &vk, &old.open(), &recipient, FAST).unwrap();
    let old_secret = unseal(&img, &old.open()).unwrap();
    let (_, old_token) = read_tokens(&img).unwrap().zymkey.unwrap();

    let recovery =
        decrypt_recovery(&sealed_root::recovery_ciphertext(&img).unwrap(), &identity).unwrap();
    let wrong = sealed_root::RecoverySecret::from_slice(&[7u8; 32]).unwrap();
    assert!(matches!(
        sealed_root::reseal(&img, &wrong, &new.open()),
        Err(Error::WrongSecret { .. })
    ));
    let slot = sealed_root::reseal(&img, &recovery, &new.open()).unwrap();

    let u = unseal(&img, &new.open()).unwrap();
    assert_eq!(u.keyslot(), slot);
    u.verify_volume(&img).unwrap();
    // The old module cannot unseal the new blob, and its old secret opens nothing any more.
    assert!(unseal(&img, &old.open()).is_err());
    let mut luks = Luks2::open(&img).unwrap();
    for ks in 0..32 {
        if keyslot_json(&img, ks).is_object() {
            assert!(
                !luks.test_passphrase(ks, old_secret.passphrase()).unwrap(),
                "slot {ks}"
            );
        }
    }
    let json = luks.header_json().unwrap();
    assert_eq!(json["keyslots"].as_object().unwrap().len(), 2, "{json}");
    assert_ne!(read_tokens(&img).unwrap().zymkey.unwrap().1, old_token);
    // The recovery slot is untouched.
    assert!(
        luks.test_passphrase(e.recovery_keyslot, recovery.to_typable().as_bytes())
            .unwrap()
    );
}

#[test]
fn rotating_the_recovery_secret_retires_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (identity, recipient) = vendor();
    let e = enroll(&img, &vk, &zk, &recipient, FAST).unwrap();
    let before =
        decrypt_recovery(&sealed_root::recovery_ciphertext(&img).unwrap(), &identity).unwrap();

    let u = unseal(&img, &zk).unwrap();
    let slot = sealed_root::rotate_recovery(&img, &u, &recipient, FAST).unwrap();
    let after =
        decrypt_recovery(&sealed_root::recovery_ciphertext(&img).unwrap(), &identity).unwrap();
    assert_ne!(before.expose_secret(), after.expose_secret());
    let mut luks = Luks2::open(&img).unwrap();
    assert!(
        luks.test_passphrase(slot, after.to_typable().as_bytes())
            .unwrap()
    );
    if slot != e.recovery_keyslot {
        assert!(keyslot_json(&img, e.recovery_keyslot).is_null());
    } else {
        assert!(
            !luks
                .test_passphrase(slot, before.to_typable().as_bytes())
                .unwrap()
        );
    }
    assert!(matches!(
        sealed_root::reseal(&img, &before, &zk),
        Err(Error::WrongSecret { .. })
    ));
    // Still unseals and verifies with the module.
    unseal(&img, &zk).unwrap().verify_volume(&img).unwrap();
}

/// The attacker of DESIGN.md §7 "root partition swapped": their own LUKS2 volume, a keyslot
/// for the exfiltrated sealed secret, and the victim's token copied over.
fn attacker_volume(
    dir: &std::path::Path,
    victim: &std::path::Path,
    secret: &[u8],
    same_uuid: bool,
) -> std::path::PathBuf {
    let (img, attacker_vk) = fresh_volume(dir, "attacker.img");
    let mut dev = CryptInit::init(&img).unwrap();
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .unwrap();
    // The attacker's slot gets a cheap KDF (it is what the stolen secret needs, and keeps the
    // test fast).
    dev.settings_handle()
        .set_pbkdf_type(&libcryptsetup_rs::CryptPbkdfType {
            type_: libcryptsetup_rs::consts::vals::CryptKdf::Pbkdf2,
            hash: Some("sha256".into()),
            time_ms: 0,
            iterations: 1000,
            max_memory_kb: 0,
            parallel_threads: 0,
            flags: libcryptsetup_rs::consts::flags::CryptPbkdf::NO_BENCHMARK,
        })
        .unwrap();
    let slot = dev
        .keyslot_handle()
        .add_by_key(
            None,
            Some(libcryptsetup_rs::Either::Left(attacker_vk.expose_secret())),
            secret,
            libcryptsetup_rs::consts::flags::CryptVolumeKey::empty(),
        )
        .unwrap();
    assert_eq!(slot, 0);
    drop(dev);
    let mut victim_luks = Luks2::open(victim).unwrap();
    let (_, token) = victim_luks
        .tokens_of_type("keybound-zymkey")
        .unwrap()
        .remove(0);
    let victim_uuid = sealed_root_uuid_text(&mut victim_luks);
    let mut dev = CryptInit::init(&img).unwrap();
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .unwrap();
    // The copied token names keyslot 0, which on this volume opens with the stolen secret.
    dev.token_handle()
        .json_set(TokenInput::AddToken(&token))
        .unwrap();
    drop(dev);
    if same_uuid {
        let st = std::process::Command::new("cryptsetup")
            .args(["luksUUID", "-q", "--uuid", &victim_uuid])
            .arg(&img)
            .status()
            .unwrap();
        assert!(st.success());
    }
    img
}

fn sealed_root_uuid_text(luks: &mut Luks2) -> String {
    let u = luks.uuid().unwrap();
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[test]
fn a_swapped_volume_carrying_a_copied_token_fails_the_volume_check() {
    let tmp = tempfile::tempdir().unwrap();
    let (victim, vk) = fresh_volume(tmp.path(), "victim.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (_, recipient) = vendor();
    let e = enroll(&victim, &vk, &zk, &recipient, FAST).unwrap();
    assert_eq!(
        e.sealed_keyslot, 0,
        "the attacker volume below relies on slot 0"
    );
    let stolen = unseal(&victim, &zk).unwrap();

    for same_uuid in [false, true] {
        let dir = tempfile::tempdir_in(tmp.path()).unwrap();
        let swapped = attacker_volume(dir.path(), &victim, stolen.passphrase(), same_uuid);
        // Unsealing "works": the blob is genuine and the stolen secret opens the attacker's slot.
        let u = unseal(&swapped, &zk).unwrap();
        let err = u.verify_volume(&swapped).unwrap_err();
        let want = if same_uuid {
            "volume key digest differs"
        } else {
            "LUKS2 UUID differs"
        };
        assert!(
            matches!(&err, Error::VolumeCheck { what, .. } if *what == want),
            "same_uuid={same_uuid}: {err}"
        );
        // The original volume still verifies with the same unsealed value.
        u.verify_volume(&victim).unwrap();
    }
}

#[test]
fn tokens_naming_a_missing_keyslot_or_with_unknown_fields_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (_, recipient) = vendor();
    let e = enroll(&img, &vk, &zk, &recipient, FAST).unwrap();
    let (_, good) = Luks2::open(&img)
        .unwrap()
        .tokens_of_type("keybound-zymkey")
        .unwrap()
        .remove(0);

    let replace = |json: &Value| {
        let mut dev = CryptInit::init(&img).unwrap();
        dev.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .unwrap();
        dev.token_handle()
            .json_set(TokenInput::ReplaceToken(e.zymkey_token, json))
            .map(drop)
    };

    // A policy field an attacker might add: refused, never obeyed.
    let mut edited = good.clone();
    edited["volume-check"] = "skip".into();
    replace(&edited).unwrap();
    let err = unseal(&img, &zk).unwrap_err();
    assert!(
        err.to_string().contains("unknown field \"volume-check\""),
        "{err}"
    );
    let mut edited = good.clone();
    edited["pbkdf"] = "pbkdf2".into();
    replace(&edited).unwrap();
    assert!(
        read_tokens(&img)
            .unwrap_err()
            .to_string()
            .contains("\"pbkdf\"")
    );

    // The recovery keyslot named by the zymkey token: both tokens name one slot.
    let mut edited = good.clone();
    edited["keyslots"] = serde_json::json!([e.recovery_keyslot.to_string()]);
    replace(&edited).unwrap();
    let err = unseal(&img, &zk).unwrap_err();
    assert!(err.to_string().contains("same keyslot"), "{err}");

    // libcryptsetup itself refuses a token naming a keyslot that does not exist.
    let mut edited = good.clone();
    edited["keyslots"] = serde_json::json!(["9"]);
    assert!(replace(&edited).is_err());

    replace(&good).unwrap();
    unseal(&img, &zk).unwrap().verify_volume(&img).unwrap();
}
