//! `keybound reseal` end to end on an image file: the recovery secret on stdin re-seals the
//! volume to a replacement module (reached by the binary through the real stack), the old
//! module is retired, and the secret never appears in the output.

#[path = "../../sealed-root/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Module, fresh_volume, vendor};
use sealed_root::{RecoveryKdf, decrypt_recovery, enroll, recovery_ciphertext, unseal};
use zymkey_testkit::library_path;

fn keybound_reseal(device: &Path, module: &Module, stdin: &[u8]) -> Output {
    let lib_dir = library_path().parent().unwrap().to_path_buf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["reseal", "--device"])
        .arg(device)
        .env("KEYBOUND_ZK_SOCKET", module.socket())
        .env("LD_LIBRARY_PATH", lib_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running keybound");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn reseal_reads_the_secret_from_stdin_and_binds_the_new_module() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let old = Module::start("board-1", "card-1");
    let new = Module::start("board-1", "card-1");
    let (identity, recipient) = vendor();
    enroll(
        &img,
        &vk,
        &old.open(),
        &recipient,
        RecoveryKdf::ReducedForTests,
    )
    .unwrap();
    let secret = decrypt_recovery(&recovery_ciphertext(&img).unwrap(), &identity).unwrap();
    let typed = secret.to_typable();

    // A wrong secret is refused and changes nothing.
    let wrong = typed.replace(
        &typed[..4],
        if &typed[..4] == "0000" {
            "1111"
        } else {
            "0000"
        },
    );
    let out = keybound_reseal(&img, &new, format!("{wrong}\n").as_bytes());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not open keyslot"), "{err}");
    unseal(&img, &old.open()).unwrap();

    let out = keybound_reseal(&img, &new, format!("{}\n", &*typed).as_bytes());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("volume check verified"), "{stdout}");
    assert!(stderr.contains("keybound rotate"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(&typed[..14]), "secret echoed: {text}");
    }
    unseal(&img, &new.open())
        .unwrap()
        .verify_volume(&img)
        .unwrap();
    assert!(unseal(&img, &old.open()).is_err());
}

#[test]
fn reseal_refuses_text_that_is_not_a_recovery_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, _vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let out = keybound_reseal(&img, &m, b"not-a-secret\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recovery secret: only hex digits"), "{err}");
    assert!(!err.contains("not-a-secret"));
}
