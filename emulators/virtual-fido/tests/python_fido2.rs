//! Acceptance with a real client: Yubico's python-fido2 (client and server, verification on)
//! registers and authenticates against the daemon's raw socket, with PIN, UV, hmac-secret and
//! U2F. The token waits for a touch; the client's prompt callback gives it over the control
//! socket, so keepalives and presence run as with a person at the token. The interpreter comes from `target/pyenv`, created by `scripts/setup`.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn python_fido2_registers_and_authenticates_with_verification_on() {
    let python = repo_root().join("target/pyenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it creates the venv with the pinned fido2 from PyPI)",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw.sock");
    let control = tmp.path().join("control.sock");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_virtual-fido"))
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .arg("--raw-socket")
            .arg(&raw)
            .arg("--control")
            .arg(&control)
            .arg("--presence")
            .arg("wait-for-touch")
            .stdin(Stdio::null())
            .spawn()
            .expect("starting virtual-fido"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&raw).is_err() {
        assert!(Instant::now() < deadline, "virtual-fido did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = Command::new(&python)
        .arg("acceptance.py")
        .arg(&raw)
        .arg(&control)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python"))
        .output()
        .expect("running the python acceptance script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python-fido2 acceptance failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(result["ok"], true, "{result}");
    for check in [
        "register_uv",
        "register_attestation_packed",
        "register_hmac_secret",
        "assert_uv",
        "hmac_secret_same_salt_same_output",
        "hmac_secret_other_salt_differs",
        "discoverable_login",
        "u2f_register_authenticate",
        "touched_on_prompt",
        "status_counter",
    ] {
        assert_eq!(result["checks"][check], true, "{check}: {result}");
    }
    // The state file recorded the PIN and the credentials.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("state/token.json")).unwrap())
            .unwrap();
    assert!(state["pin_hash"].is_string());
    assert!(state["counter"].as_u64().unwrap() >= 4);
}
