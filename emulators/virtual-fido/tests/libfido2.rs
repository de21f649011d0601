//! Acceptance with libfido2 (the library behind fido2-token/-cred/-assert and pam_u2f), over
//! the raw socket through libfido2's I/O hooks: make a credential and verify its packed
//! attestation, get and verify assertions with PIN, UV, hmac-secret, a silent probe and a
//! wrong PIN. Needs a C compiler and libfido2-dev (`scripts/setup`).

use std::path::PathBuf;
use std::process::Command;

use virtual_fido::ctaphid::EngineConfig;
use virtual_fido::transport::raw_socket::RawSocketServer;
use virtual_fido::{Token, TokenConfig};

#[test]
fn libfido2_makes_and_verifies_credentials_and_assertions() {
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libfido2"])
        .output();
    let flags = match flags {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
        _ => panic!("libfido2-dev (pkg-config libfido2) is missing: run scripts/setup"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("check");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/libfido2/check.c");
    let cc = Command::new("cc")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .args(flags.split_whitespace())
        .output()
        .expect("a C compiler (cc): run scripts/setup");
    assert!(
        cc.status.success(),
        "compiling {}: {}",
        source.display(),
        String::from_utf8_lossy(&cc.stderr)
    );

    let token = Token::in_memory(TokenConfig::default());
    let socket = tmp.path().join("raw.sock");
    RawSocketServer::bind(&socket, token.clone(), EngineConfig::default())
        .unwrap()
        .spawn();
    let out = Command::new(&exe).arg(&socket).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok libfido2"),
        "libfido2 check failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = token.export_state();
    assert!(state.pin_hash.is_some());
    assert_eq!(state.pin_retries, 7, "the wrong PIN cost one retry");
    assert_eq!(state.credentials.len(), 1);
    assert!(state.credentials[0].discoverable);
    assert_eq!(state.credentials[0].cred_protect, 2);
}
