//! The `zymkey-emu` binary: readiness, lifeline, state across restarts (power cycles),
//! self-destruct for good, and a guest socket that survives garbage.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use daemon_kit::ControlClient;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use serde_json::{Value, json};
use zeroize::Zeroizing;
use zk_app_utils::transport::{Endpoint, call};
use zymkey_emu::codes::{ZK_ERR_DESTROYED, ZK_ERR_PROTOCOL};
use zymkey_emu::wire::{self, FromModule, Hello, Op, Reply, ToModule};

struct Daemon {
    child: Child,
    control: ControlClient,
    guest: PathBuf,
    lifeline: Option<OwnedFd>,
}

/// A pipe whose `child_end` is inheritable and whose other end is close-on-exec.
fn pipe_for_child() -> (OwnedFd, OwnedFd) {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    (read, write)
}

fn inheritable(fd: &OwnedFd) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
}

impl Daemon {
    fn start(dir: &Path) -> Self {
        let (ready_r, ready_w) = pipe_for_child();
        let (life_r, life_w) = pipe_for_child();
        inheritable(&ready_w);
        inheritable(&life_r);
        let guest = dir.join("guest.sock");
        let control = dir.join("control.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_zymkey-emu"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--control")
            .arg(&control)
            .arg("--guest-socket")
            .arg(&guest)
            .arg("--ready-fd")
            .arg(ready_w.as_raw_fd().to_string())
            .arg("--lifeline-fd")
            .arg(life_r.as_raw_fd().to_string())
            .spawn()
            .unwrap();
        drop(ready_w);
        drop(life_r);
        let mut line = String::new();
        std::fs::File::from(ready_r)
            .read_to_string(&mut line)
            .unwrap();
        assert_eq!(line, "READY=1\n");
        let control = ControlClient::connect(&control, Duration::from_secs(10)).unwrap();
        Self {
            child,
            control,
            guest,
            lifeline: Some(life_w),
        }
    }

    fn ctl(&mut self, request: Value) -> Value {
        self.control.request(&request).unwrap()
    }

    fn call(&self, op: Op) -> Result<Reply, i32> {
        call(&Endpoint::Socket(self.guest.clone()), op, Duration::ZERO)
    }

    /// Power cut: SIGKILL, no goodbye.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock(d: &Daemon, data: &[u8]) -> Vec<u8> {
    match d.call(Op::Lock {
        shared: false,
        data: Zeroizing::new(data.to_vec()),
    }) {
        Ok(Reply::Bytes(b)) => b.to_vec(),
        other => panic!("{other:?}"),
    }
}

fn unlock(d: &Daemon, blob: &[u8]) -> Result<Vec<u8>, i32> {
    match d.call(Op::Unlock {
        shared: false,
        blob: blob.to_vec(),
    })? {
        Reply::Bytes(b) => Ok(b.to_vec()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn prints_capabilities() {
    let out = Command::new(env!("CARGO_BIN_EXE_zymkey-emu"))
        .arg("--print-capabilities")
        .output()
        .unwrap();
    assert!(out.status.success());
    let caps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(caps["type"], "zymkey-emu");
    assert_eq!(caps["wire"]["versions"], json!([1]));
    assert!(caps["faults"].as_array().unwrap().contains(&json!("spoof")));
}

#[test]
fn state_survives_a_power_cut_and_self_destruct_is_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    d.ctl(json!({"cmd": "attach", "board": "b", "card": "c"}));
    let serial = d.ctl(json!({"cmd": "status"}))["serial"].clone();
    let blob = lock(&d, b"survives");
    d.ctl(json!({"cmd": "cut-tab"}));
    d.kill();

    let mut d = Daemon::start(tmp.path());
    let status = d.ctl(json!({"cmd": "status"}));
    assert_eq!(status["serial"], serial);
    assert_eq!(status["mode"], "production");
    d.ctl(json!({"cmd": "attach", "board": "b", "card": "c"}));
    assert_eq!(unlock(&d, &blob).unwrap(), b"survives");
    d.call(Op::SetPerimeterAction {
        channel: 0,
        flags: 2,
    })
    .unwrap();
    assert_eq!(
        d.ctl(json!({"cmd": "breach", "channel": 0}))["self_destructed"],
        true
    );
    d.kill();

    let mut d = Daemon::start(tmp.path());
    assert_eq!(d.ctl(json!({"cmd": "status"}))["destroyed"], true);
    d.ctl(json!({"cmd": "attach", "board": "b", "card": "c"}));
    assert_eq!(unlock(&d, &blob), Err(ZK_ERR_DESTROYED));
    assert!(d.control.request(&json!({"cmd": "factory-reset"})).is_err());
    d.kill();
}

/// The `crash` fault kills the process during the next call (the call gets no answer); started
/// again on its state directory the module is the same and still unlocks what it locked.
#[test]
fn the_crash_fault_kills_the_daemon_mid_call_and_its_state_survives() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    d.ctl(json!({"cmd": "attach", "board": "b", "card": "c"}));
    let blob = lock(&d, b"kept");
    d.ctl(json!({"cmd": "fault", "kind": "crash"}));
    assert!(
        unlock(&d, &blob).is_err(),
        "a killed module answers nothing"
    );
    let status = d.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    d.kill();

    let mut d = Daemon::start(tmp.path());
    d.ctl(json!({"cmd": "attach", "board": "b", "card": "c"}));
    assert_eq!(unlock(&d, &blob).unwrap(), b"kept");
    d.kill();
}

#[test]
fn battery_removal_with_tamper_armed_self_destructs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    d.ctl(json!({"cmd": "attach", "board": "b", "card": "c"}));
    assert_eq!(
        d.ctl(json!({"cmd": "remove-battery"}))["self_destructed"],
        false
    );
    d.ctl(json!({"cmd": "insert-battery"}));
    d.call(Op::SetPerimeterAction {
        channel: 1,
        flags: 3,
    })
    .unwrap();
    assert_eq!(
        d.ctl(json!({"cmd": "remove-battery"}))["self_destructed"],
        true
    );
    d.kill();
}

fn read_msg(s: &mut UnixStream) -> FromModule {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    FromModule::decode(&body).unwrap()
}

fn hello(nonce: u64) -> Vec<u8> {
    wire::frame(
        &ToModule::Hello(Hello {
            min_version: 1,
            max_version: 1,
            nonce,
        })
        .encode(),
    )
}

#[test]
fn garbage_on_the_guest_socket_gets_error_replies_and_the_session_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    d.ctl(json!({"cmd": "attach", "board": "b", "card": "c"}));
    let mut s = UnixStream::connect(&d.guest).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    // A request before the handshake.
    let req = ToModule::Request {
        id: 7,
        op: Op::GetModel,
    };
    s.write_all(&wire::frame(&req.encode())).unwrap();
    assert_eq!(
        read_msg(&mut s),
        FromModule::Response {
            id: 7,
            result: Err(ZK_ERR_PROTOCOL)
        }
    );
    // A well-framed body that is not a message.
    s.write_all(&wire::frame(&[0x55, 1, 2, 3])).unwrap();
    assert_eq!(
        read_msg(&mut s),
        FromModule::Response {
            id: 0,
            result: Err(ZK_ERR_PROTOCOL)
        }
    );
    // An impossible length: framing is lost until the next Hello.
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 9, 9, 9]).unwrap();
    assert_eq!(
        read_msg(&mut s),
        FromModule::Response {
            id: 0,
            result: Err(ZK_ERR_PROTOCOL)
        }
    );
    s.write_all(&[1, 2, 3]).unwrap();
    s.write_all(&hello(99)).unwrap();
    assert_eq!(
        read_msg(&mut s),
        FromModule::HelloReply {
            version: 1,
            nonce: 99
        }
    );
    s.write_all(&wire::frame(&req.encode())).unwrap();
    assert_eq!(
        read_msg(&mut s),
        FromModule::Response {
            id: 7,
            result: Ok(Reply::Text("ZYMKEY4".into()))
        }
    );
    // An unsupported version range.
    let bad = ToModule::Hello(Hello {
        min_version: 2,
        max_version: 9,
        nonce: 1,
    });
    s.write_all(&wire::frame(&bad.encode())).unwrap();
    assert!(matches!(
        read_msg(&mut s),
        FromModule::Response {
            id: 0,
            result: Err(ZK_ERR_PROTOCOL)
        }
    ));
    drop(s);
    // The daemon is alive and the next connection (a QEMU restart) works.
    assert!(matches!(d.call(Op::GetSerial), Ok(Reply::Text(_))));
    d.kill();
}

#[test]
fn the_daemon_exits_when_its_lifeline_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    drop(d.lifeline.take());
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
