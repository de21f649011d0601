//! The attacker tool on the host: a sealed LUKS2 image (sealed-root's own enrolment) and an
//! emulated Zymkey reached through the real client stack. The tool's hex output must open the
//! sealed keyslot with `cryptsetup open --test-passphrase`; another module must give nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sealed_root::{BoardProfile, FormatParams, RecoveryKdf};

fn sealed_image(dir: &Path, module: &zymkey_testkit::Module) -> PathBuf {
    let img = dir.join("root.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(24 << 20)
        .unwrap();
    let vk = sealed_root::format_fresh(
        &img,
        &FormatParams {
            profile: BoardProfile::AesXts,
            label: Some("keybound-root".into()),
        },
    )
    .unwrap();
    let vendor = age::x25519::Identity::generate().to_public();
    let zk = module.open().unwrap();
    sealed_root::enroll(&img, &vk, &zk, &vendor, RecoveryKdf::ReducedForTests).unwrap();
    img
}

fn attack(img: &Path, module: &zymkey_testkit::Module) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keybound-attack-unseal"))
        .arg(img)
        .arg(zymkey_testkit::library_path())
        .env("KEYBOUND_ZK_SOCKET", module.socket())
        .output()
        .unwrap()
}

fn decode_hex(text: &str) -> Vec<u8> {
    let text = text.trim();
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn test_passphrase(img: &Path, key: &[u8], dir: &Path) -> bool {
    let key_file = dir.join("candidate");
    std::fs::write(&key_file, key).unwrap();
    let status = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&key_file)
        .arg(img)
        .status()
        .expect("running cryptsetup");
    std::fs::remove_file(&key_file).unwrap();
    status.success()
}

#[test]
fn the_tool_prints_the_sealed_keyslot_passphrase_and_cryptsetup_accepts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let module = zymkey_testkit::Module::start("board-1", "card-1");
    let img = sealed_image(tmp.path(), &module);

    let out = attack(&img, &module);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.len(), 65, "64 hex digits and a newline: {stdout:?}");
    let key = decode_hex(&stdout);
    assert!(test_passphrase(&img, &key, tmp.path()));
    // The hex text itself is not the passphrase (the scan must decode it).
    assert!(!test_passphrase(&img, stdout.trim().as_bytes(), tmp.path()));
}

#[test]
fn the_secondary_header_is_used_when_the_primary_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let module = zymkey_testkit::Module::start("board-1", "card-1");
    let img = sealed_image(tmp.path(), &module);
    let good = attack_kit::read_header(&img).unwrap();
    assert_eq!(good.offset, 0);
    assert_eq!(good.tokens_of_type("keybound-zymkey").len(), 1);
    // Flip a byte in the primary's JSON area: its checksum no longer holds.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[4096 + 10] ^= 0x55;
    std::fs::write(&img, &bytes).unwrap();
    let header = attack_kit::read_header(&img).unwrap();
    assert!(header.offset > 0, "the secondary copy was used");
    assert_eq!(header.json["tokens"], good.json["tokens"]);
    let out = attack(&img, &module);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn another_module_and_a_plain_file_give_no_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let module = zymkey_testkit::Module::start("board-1", "card-1");
    let img = sealed_image(tmp.path(), &module);
    let other = zymkey_testkit::Module::start("board-2", "card-2");
    let out = attack(&img, &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("keybound-attack-unseal: zymkey:"), "{err}");

    let plain = tmp.path().join("plain.img");
    std::fs::write(&plain, vec![0u8; 64 << 10]).unwrap();
    let out = attack(&plain, &module);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no usable LUKS2 header"), "{err}");
}

#[test]
fn the_attacker_init_script_passes_sh_n_and_runs_the_tool_on_the_root_partition() {
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("initramfs/init");
    let status = Command::new("sh").arg("-n").arg(&init).status().unwrap();
    assert!(status.success(), "sh -n {init:?}");
    let text = std::fs::read_to_string(&init).unwrap();
    assert!(text.starts_with("#!/bin/busybox sh\n"));
    for must in [
        "/usr/bin/keybound-attack-unseal /dev/vda2",
        "mount -t vfat -o rw /dev/vda1 /boot",
        "> /boot/loot.txt",
        "say \"loot written\"",
        "poweroff -f",
    ] {
        assert!(text.contains(must), "{must:?} not in {init:?}");
    }
}
