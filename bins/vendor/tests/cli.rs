//! keybound-vendor end to end: keygen, then a card enrolled to that key through the real
//! Zymkey stack, then the recovery secret decrypted from the raw card image opens the recovery
//! keyslot.

#[path = "../../sealed-root/tests/common/mod.rs"]
mod common;

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use common::{Module, cli_test_passphrase, fresh_volume};
use sealed_root::{Enrolment, Luks2, RecoveryKdf};

fn vendor_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keybound-vendor"))
        .args(args)
        .output()
        .expect("running keybound-vendor")
}

fn keygen(dir: &Path) -> (PathBuf, age::x25519::Recipient) {
    let id = dir.join("vendor.age");
    let out = vendor_cmd(&["keygen", "--output", id.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let recipient = age::x25519::Recipient::from_str(line.trim()).expect("an age1 recipient");
    (id, recipient)
}

/// A card image: MBR, an empty boot partition, and `root` copied in as partition 2.
fn card_with_root(dir: &Path, root: &Path) -> PathBuf {
    let root_bytes = std::fs::read(root).unwrap();
    let layout = card::CardLayout::plan(0x4b42_0001, 4, root_bytes.len() as u64);
    let path = dir.join("card.img");
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(layout.card_size()).unwrap();
    layout.write_mbr(&mut f).unwrap();
    f.seek(SeekFrom::Start(layout.root.offset)).unwrap();
    f.write_all(&root_bytes).unwrap();
    path
}

fn enrolled_card(dir: &Path) -> (PathBuf, PathBuf, PathBuf, Enrolment, Module) {
    let (identity, recipient) = keygen(dir);
    let (root, vk) = fresh_volume(dir, "root.img");
    let m = Module::start("board-1", "card-1");
    let e = sealed_root::enroll(
        &root,
        &vk,
        &m.open(),
        &recipient,
        RecoveryKdf::ReducedForTests,
    )
    .unwrap();
    let card = card_with_root(dir, &root);
    (identity, root, card, e, m)
}

#[test]
fn keygen_writes_a_private_identity_and_never_overwrites_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, recipient) = keygen(tmp.path());
    let meta = std::fs::metadata(&id).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&id).unwrap();
    assert!(text.contains(&format!("# public key: {recipient}")));
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .count(),
        1
    );
    let again = vendor_cmd(&["keygen", "--output", id.to_str().unwrap()]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&id).unwrap(), text);
}

#[test]
fn recovery_secret_from_a_raw_card_image_opens_the_recovery_keyslot() {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, root, card, e, _m) = enrolled_card(tmp.path());

    let out = vendor_cmd(&[
        "recovery-secret",
        "--card",
        card.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let typed = stdout.trim_end();
    assert_eq!(typed.len(), 79, "16 groups of 4 hex digits");
    assert!(
        typed
            .split('-')
            .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit()))
    );
    // The secret appears on stdout only, never in the diagnostics.
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&typed[..9]));

    // As typed, it opens the recovery keyslot (libcryptsetup and the cryptsetup CLI) and only it.
    let mut luks = Luks2::open(&root).unwrap();
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
        &root,
        e.recovery_keyslot,
        typed.as_bytes()
    ));

    // The plain LUKS2 volume gives the same secret.
    let out = vendor_cmd(&[
        "recovery-secret",
        "--card",
        root.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), stdout);

    // The only file written is the temporary header copy, and it is gone afterwards.
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keybound-vendor"))
        .args(["recovery-secret", "--card"])
        .arg(&card)
        .arg("--identity")
        .arg(&identity)
        .env("TMPDIR", scratch.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[test]
fn a_recovered_secret_reseals_the_card_to_a_replacement_module() {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, root, card, _e, old) = enrolled_card(tmp.path());
    let out = vendor_cmd(&[
        "recovery-secret",
        "--card",
        card.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let secret =
        sealed_root::RecoverySecret::parse_typable(&String::from_utf8(out.stdout).unwrap())
            .unwrap();
    let new = Module::start("board-1", "card-1");
    sealed_root::reseal(&root, &secret, &new.open()).unwrap();
    sealed_root::unseal(&root, &new.open())
        .unwrap()
        .verify_volume(&root)
        .unwrap();
    assert!(sealed_root::unseal(&root, &old.open()).is_err());
}

#[test]
fn refusals_are_clear_and_leak_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_identity, _root, card, _e, _m) = enrolled_card(tmp.path());
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = keygen(other_dir.path());

    let out = vendor_cmd(&[
        "recovery-secret",
        "--card",
        card.to_str().unwrap(),
        "--identity",
        other.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no identity in the file decrypts"), "{err}");

    // A card whose partition 2 is not LUKS2.
    let blank_root = common::image(tmp.path(), "blank.img", 2);
    let blank_dir = tempfile::tempdir().unwrap();
    let blank = card_with_root(blank_dir.path(), &blank_root);
    let out = vendor_cmd(&[
        "recovery-secret",
        "--card",
        blank.to_str().unwrap(),
        "--identity",
        other.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("is not LUKS2"), "{err}");

    // A damaged identity file: the offending line is not echoed.
    let bad = tmp.path().join("bad.age");
    std::fs::write(&bad, "AGE-SECRET-KEY-1NOTAKEY\n").unwrap();
    let out = vendor_cmd(&[
        "recovery-secret",
        "--card",
        card.to_str().unwrap(),
        "--identity",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("line 1 is not an age X25519 identity") && !err.contains("NOTAKEY"),
        "{err}"
    );
}

#[test]
fn help_reads_well() {
    for args in [
        &["--help"][..],
        &["keygen", "--help"],
        &["recovery-secret", "--help"],
    ] {
        let out = vendor_cmd(args);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: keybound-vendor"), "{text}");
    }
    let text = String::from_utf8(vendor_cmd(&["--help"]).stdout).unwrap();
    assert!(text.contains("recovery-secret") && text.contains("keygen"));
    assert!(text.contains("never install it on a device"));
}
