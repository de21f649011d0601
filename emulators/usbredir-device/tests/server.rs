//! The unix-socket server with a fake host on a real socket: plug, echo, refuse a second
//! connection, unplug on close, plug again on a new connection.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{FakeHost, QEMU_CAPS, identity};
use usbredir_device::wire::{Frame, Message, Status};
use usbredir_device::{DeviceServer, HidDevice, HidIdentity, InputReports};

#[derive(Debug, PartialEq)]
enum Seen {
    Plugged,
    Unplugged,
    Output(Vec<u8>),
}

struct Echo {
    seen: mpsc::Sender<Seen>,
}

impl HidDevice for Echo {
    fn identity(&self) -> HidIdentity {
        identity()
    }
    fn on_output_report(&mut self, report: &[u8], input: &InputReports) {
        let _ = self.seen.send(Seen::Output(report.to_vec()));
        let mut echo = report.to_vec();
        echo.reverse();
        input.send(echo).unwrap();
    }
    fn on_plugged(&mut self, _input: &InputReports) {
        let _ = self.seen.send(Seen::Plugged);
    }
    fn on_unplugged(&mut self) {
        let _ = self.seen.send(Seen::Unplugged);
    }
}

struct Client {
    stream: UnixStream,
    host: FakeHost,
}

impl Client {
    fn connect(path: &std::path::Path) -> Client {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Client {
            stream,
            host: FakeHost::new(QEMU_CAPS),
        };
        let hello = client.host.hello();
        client.stream.write_all(&hello).unwrap();
        client
    }

    /// Reads until `n` frames arrived.
    fn frames(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut buf = [0u8; 4096];
        while frames.len() < n {
            let got = self.stream.read(&mut buf).expect("frames from the device");
            assert!(got > 0, "device closed the connection; had {frames:?}");
            frames.extend(self.host.receive(&buf[..got]));
        }
        assert_eq!(frames.len(), n, "{frames:?}");
        frames
    }

    fn send(&mut self, message: &Message) -> u64 {
        let (id, bytes) = self.host.request(message);
        self.stream.write_all(&bytes).unwrap();
        id
    }
}

fn recv(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("device callback")
}

#[test]
fn serves_one_connection_at_a_time_and_replugs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.sock");
    let (tx, rx) = mpsc::channel();
    let server = DeviceServer::listen(&path, Echo { seen: tx }).unwrap();
    let handle = server.handle();
    let runner = thread::spawn(move || server.run());

    let mut a = Client::connect(&path);
    // hello, ep_info, interface_info, device_connect
    let frames = a.frames(4);
    assert!(matches!(frames[3].message, Message::DeviceConnect(_)));
    assert_eq!(recv(&rx), Seen::Plugged);

    // A second host is turned away while the first is connected.
    let mut b = UnixStream::connect(&path).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        b.read(&mut buf).unwrap(),
        0,
        "second connection closed at once"
    );

    a.send(&Message::SetConfiguration { configuration: 1 });
    a.frames(1);
    a.send(&Message::StartInterruptReceiving { endpoint: 0x81 });
    a.frames(1);
    let report: Vec<u8> = (0..64).collect();
    let (_, out) = a.host.interrupt_out(&report);
    a.stream.write_all(&out).unwrap();
    assert_eq!(recv(&rx), Seen::Output(report.clone()));
    // OUT completion, then the echo on the IN endpoint.
    let frames = a.frames(2);
    let Message::InterruptPacket(ip) = &frames[1].message else {
        panic!("{frames:?}")
    };
    let mut expected = report.clone();
    expected.reverse();
    assert_eq!(
        (ip.endpoint, ip.status, &ip.data),
        (0x81, Status::Success, &expected)
    );

    // Input reports from outside the callbacks go out too.
    handle.input_reports().send(vec![9; 64]).unwrap();
    let frames = a.frames(1);
    assert!(matches!(&frames[0].message, Message::InterruptPacket(ip) if ip.data == vec![9; 64]));
    assert!(handle.input_reports().send(vec![0; 65]).is_err());

    // Unplug and plug again on the same connection.
    handle.unplug();
    let frames = a.frames(1);
    assert_eq!(frames[0].message, Message::DeviceDisconnect);
    assert_eq!(recv(&rx), Seen::Unplugged);
    handle.plug();
    a.send(&Message::DeviceDisconnectAck);
    let frames = a.frames(3);
    assert!(matches!(frames[2].message, Message::DeviceConnect(_)));
    assert_eq!(recv(&rx), Seen::Plugged);

    // Closing the connection unplugs; a new connection plugs again.
    drop(a);
    assert_eq!(recv(&rx), Seen::Unplugged);
    let mut c = Client::connect(&path);
    c.frames(4);
    assert_eq!(recv(&rx), Seen::Plugged);

    // A malformed packet closes the connection (and unplugs), the server goes on.
    c.stream.write_all(&[0xff; 16]).unwrap();
    assert_eq!(recv(&rx), Seen::Unplugged);
    assert_eq!(c.stream.read(&mut buf).unwrap(), 0);

    handle.shutdown();
    runner.join().unwrap().unwrap();
    assert!(!path.exists(), "socket removed on shutdown");
}

#[test]
fn refuses_to_replace_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, b"x").unwrap();
    let (tx, _rx) = mpsc::channel();
    assert!(matches!(
        DeviceServer::listen(&path, Echo { seen: tx }),
        Err(usbredir_device::ServerError::NotASocket(_))
    ));
}

#[test]
fn connect_mode_serves_a_listening_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qemu.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    let server = DeviceServer::connect(&path, Echo { seen: tx }).unwrap();
    let runner = thread::spawn(move || server.run());
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut client = Client {
        stream,
        host: FakeHost::new(QEMU_CAPS),
    };
    let hello = client.host.hello();
    client.stream.write_all(&hello).unwrap();
    client.frames(4);
    assert_eq!(recv(&rx), Seen::Plugged);
    drop(client);
    assert_eq!(recv(&rx), Seen::Unplugged);
    // The server returns once its single connection closed.
    runner.join().unwrap().unwrap();
}
