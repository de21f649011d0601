//! Raw CTAPHID over a unix stream socket: every message in either direction is exactly one
//! 64-byte report, nothing else (no length prefix, no report id). Each connection is one HID
//! device with its own channels; all connections share the token. While the token is unplugged,
//! connections are accepted and closed at once, and open connections are closed.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{HidReportDevice, ReportSink};
use crate::ctaphid::{CtapHid, EngineConfig, REPORT_LEN};
use crate::token::Token;

/// How often an idle connection checks time-outs and the plug.
const TICK: Duration = Duration::from_millis(50);

/// Writes IN reports to the connection.
struct StreamSink {
    stream: Mutex<UnixStream>,
    closed: AtomicBool,
}

impl ReportSink for StreamSink {
    fn send_report(&self, report: [u8; REPORT_LEN]) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        if stream.write_all(&report).is_err() {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    fn disconnect(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// A listening raw CTAPHID socket.
pub struct RawSocketServer {
    listener: UnixListener,
    path: PathBuf,
    token: Arc<Token>,
    config: EngineConfig,
}

impl RawSocketServer {
    /// Binds `path`, replacing a stale socket file (never another kind of file).
    pub fn bind(
        path: impl Into<PathBuf>,
        token: Arc<Token>,
        config: EngineConfig,
    ) -> io::Result<Self> {
        let path = path.into();
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        Ok(Self {
            listener,
            path,
            token,
            config,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections on background threads until the process exits.
    pub fn spawn(self) -> thread::JoinHandle<()> {
        thread::Builder::new()
            .name("raw-ctaphid".into())
            .spawn(move || {
                for stream in self.listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    if !self.token.plugged() {
                        let _ = stream.shutdown(Shutdown::Both);
                        continue;
                    }
                    let token = Arc::clone(&self.token);
                    let config = self.config.clone();
                    let _ = thread::Builder::new()
                        .name("raw-ctaphid-conn".into())
                        .spawn(move || serve_connection(stream, token, config));
                }
            })
            .expect("spawning the raw CTAPHID thread")
    }
}

/// Runs one connection until the peer closes it, the token is unplugged, or a `drop` fault.
pub fn serve_connection(mut stream: UnixStream, token: Arc<Token>, config: EngineConfig) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let _ = writer.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_read_timeout(Some(TICK));
    let sink = Arc::new(StreamSink {
        stream: Mutex::new(writer),
        closed: AtomicBool::new(false),
    });
    let mut device = CtapHid::new(token.clone(), sink.clone(), config);
    let mut report = [0u8; REPORT_LEN];
    let mut filled = 0;
    loop {
        if !token.plugged() || sink.closed.load(Ordering::SeqCst) {
            break;
        }
        match stream.read(&mut report[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled == REPORT_LEN {
                    filled = 0;
                    device.on_out_report(&report);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                device.poll();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    device.shutdown();
    sink.disconnect();
}
