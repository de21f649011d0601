//! The library's port path (open, flock, poll, framing, nonce/id filtering) over a serial
//! line: a pty stands in for the guest's virtio-serial port, and a relay holds one persistent
//! connection to the guest socket, as QEMU does.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use daemon_kit::ControlHandler;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use zk_app_utils::transport::{Endpoint, call};
use zymkey_emu::Emulator;
use zymkey_emu::wire::{self, Hello, Op, Reply, ToModule};

struct Line {
    _tmp: tempfile::TempDir,
    port: PathBuf,
    _slave: OwnedFd,
}

fn line() -> Line {
    let tmp = tempfile::tempdir().unwrap();
    let emu = Arc::new(Emulator::in_memory(Some([5; 32])));
    emu.handle(serde_json::from_str(r#"{"cmd":"attach","board":"b","card":"c"}"#).unwrap())
        .unwrap();
    let sock = tmp.path().join("guest.sock");
    zymkey_emu::guest::GuestServer::bind(&sock, emu)
        .unwrap()
        .spawn();

    let pty = nix::pty::openpty(None, None).unwrap();
    let mut t = tcgetattr(&pty.slave).unwrap();
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t).unwrap();
    let port = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
    ))
    .unwrap();

    // The "QEMU" side: one long-lived connection, bytes copied both ways.
    let stream = UnixStream::connect(&sock).unwrap();
    let mut master_r = File::from(pty.master);
    let mut master_w = master_r.try_clone().unwrap();
    let mut stream_r = stream.try_clone().unwrap();
    let mut stream_w = stream;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut master_r, &mut stream_w);
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream_r.read(&mut buf) {
            if n == 0 || master_w.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    Line {
        _tmp: tmp,
        port,
        _slave: pty.slave,
    }
}

#[test]
fn calls_through_a_serial_line_work_and_ignore_answers_left_by_a_dead_caller() {
    let l = line();
    let ep = Endpoint::Port(l.port.clone());
    assert_eq!(
        call(&ep, Op::GetModel, Duration::ZERO),
        Ok(Reply::Text("ZYMKEY4".into()))
    );

    // A caller that sends a Hello and a request, then dies before reading the answers.
    let mut dead = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&l.port)
        .unwrap();
    let hello = ToModule::Hello(Hello {
        min_version: 1,
        max_version: 1,
        nonce: 1,
    });
    dead.write_all(&wire::frame(&hello.encode())).unwrap();
    let req = ToModule::Request {
        id: 77,
        op: Op::GetRandom { len: 64 },
    };
    dead.write_all(&wire::frame(&req.encode())).unwrap();
    drop(dead);
    std::thread::sleep(Duration::from_millis(200));

    // The next caller reads the leftovers first, and must skip them.
    assert!(matches!(
        call(&ep, Op::GetSerial, Duration::ZERO),
        Ok(Reply::Text(s)) if s.starts_with("ZK4-")
    ));
}

#[test]
fn concurrent_callers_on_one_port_are_serialised() {
    let l = line();
    let ep = Endpoint::Port(l.port.clone());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    match call(&ep, Op::GetRandom { len: 32 }, Duration::ZERO) {
                        Ok(Reply::Bytes(b)) => assert_eq!(b.len(), 32),
                        other => panic!("{other:?}"),
                    }
                }
            });
        }
    });
}
