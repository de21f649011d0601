//! The daemon binary: `--help`, readiness, lifeline, control socket, refusals.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_virtual-fido");

#[test]
fn help_documents_transports_presence_and_control() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "TRANSPORTS",
        "--raw-socket",
        "--usbredir-socket",
        "usb-redir,chardev=ur0",
        "PRESENCE POLICIES",
        "wait-for-touch",
        "delay:MS",
        "CONTROL PROTOCOL",
        "export-state",
        "\"fault\"",
        "--ready-fd",
        "--lifeline-fd",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn ready_fd_lifeline_and_control_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let control = tmp.path().join("control.sock");
    // READY=1 arrives on the child's stdout (--ready-fd 1); its stdin is the lifeline.
    let (ready_r, ready_w) = std::io::pipe().unwrap();
    let (life_r, life_w) = std::io::pipe().unwrap();
    let mut child = Command::new(BIN)
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .arg("--raw-socket")
        .arg(tmp.path().join("raw.sock"))
        .arg("--control")
        .arg(&control)
        .args([
            "--presence",
            "wait-for-touch",
            "--ready-fd",
            "1",
            "--lifeline-fd",
            "0",
        ])
        .stdin(Stdio::from(life_r))
        .stdout(Stdio::from(ready_w))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(ready_r).read_line(&mut line).unwrap();
    assert_eq!(line, "READY=1\n");
    let mut client = daemon_kit::ControlClient::connect(&control, Duration::from_secs(5)).unwrap();
    let status = client.request(&json!({"cmd": "status"})).unwrap();
    assert_eq!(status["presence"], json!({"policy": "wait-for-touch"}));
    assert_eq!(status["plugged"], true);
    assert_eq!(status["pin_set"], false);
    // The parent goes away: the daemon exits.
    drop(life_w);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(Instant::now() < deadline, "daemon outlived its lifeline");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn refusals_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no transport"));
    let mut child = Command::new(BIN)
        .args(["--presence", "sometimes", "--raw-socket"])
        .arg(tmp.path().join("r.sock"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!child.wait().unwrap().success());
    assert!(err.contains("unknown presence policy"), "{err}");
}
