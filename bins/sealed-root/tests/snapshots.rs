//! The token JSON shapes, pinned: fixed contents for the format, and a real enrolment with the
//! variable (secret-derived or random) values redacted.

mod common;

use common::{Module, fresh_volume, vendor};
use sealed_root::token::{RecoveryToken, ZymkeyToken};
use sealed_root::{Luks2, RecoveryKdf, enroll};
use serde_json::Value;

#[test]
fn token_format_with_fixed_contents() {
    let zymkey = ZymkeyToken::new(0, (0u8..48).collect()).to_json();
    let recovery = RecoveryToken {
        keyslot: 1,
        age_ciphertext: b"age-encryption.org/v1\n-> X25519 fixed\n".to_vec(),
    }
    .to_json();
    insta::assert_json_snapshot!("zymkey_token_fixed", zymkey);
    insta::assert_json_snapshot!("recovery_token_fixed", recovery);
}

fn redact(mut token: Value, field: &str) -> Value {
    let len = token[field].as_str().map_or(0, str::len);
    assert!(len > 0, "{token}");
    token[field] = Value::String("[redacted base64]".into());
    token
}

#[test]
fn enrolled_tokens_have_the_documented_shape() {
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
    let json = Luks2::open(&img).unwrap().header_json().unwrap();
    let tokens: Vec<Value> = json["tokens"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| match t["type"].as_str() {
            Some("keybound-zymkey") => redact(t.clone(), "sealed-blob"),
            Some("keybound-recovery") => redact(t.clone(), "age-ciphertext"),
            other => panic!("unexpected token {other:?}"),
        })
        .collect();
    insta::assert_json_snapshot!("enrolled_tokens", tokens);
}

#[test]
fn summary_of_an_enrolled_volume() {
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
    let summary = sealed_root::summarize(&img).unwrap();
    assert_eq!(summary.uuid, {
        let out = std::process::Command::new("cryptsetup")
            .arg("luksUUID")
            .arg(&img)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    });
    let mut json = summary.to_json();
    json["uuid"] = Value::String("[uuid]".into());
    insta::assert_json_snapshot!("enrolled_summary", json);

    // A passphrase slot someone added shows up as "other".
    let mut dev = libcryptsetup_rs::CryptInit::init(&img).unwrap();
    dev.context_handle()
        .load::<()>(
            Some(libcryptsetup_rs::consts::vals::EncryptionFormat::Luks2),
            None,
        )
        .unwrap();
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
    dev.keyslot_handle()
        .add_by_key(
            None,
            Some(libcryptsetup_rs::Either::Left(vk.expose_secret())),
            b"added",
            libcryptsetup_rs::consts::flags::CryptVolumeKey::empty(),
        )
        .unwrap();
    drop(dev);
    let roles: Vec<_> = sealed_root::summarize(&img)
        .unwrap()
        .keyslots
        .iter()
        .map(|k| k.role)
        .collect();
    assert_eq!(
        roles,
        [
            sealed_root::SlotRole::Sealed,
            sealed_root::SlotRole::Recovery,
            sealed_root::SlotRole::Other
        ]
    );
}
