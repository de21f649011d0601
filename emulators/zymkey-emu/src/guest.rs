//! The guest wire server: the daemon listens on a unix socket; QEMU's virtio-serial chardev
//! connects to it as a client (`-chardev socket,path=S,reconnect-ms=500`, no `server=on`).
//! One connection at a time (the next waits in the backlog), so a QEMU restart (power cycle)
//! simply reconnects; requests are executed one by one. A malformed frame gets an error reply
//! and never ends the daemon.

use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use zk_app_utils::codes::ZK_ERR_PROTOCOL;
use zk_app_utils::wire::{self, Frame, FrameDecoder, FromModule, Reply, ToModule};

use crate::device::Emulator;
use crate::faults::Plan;
use crate::trace::Direction;

/// A bound guest socket.
pub struct GuestServer {
    listener: UnixListener,
    path: PathBuf,
    emu: Arc<Emulator>,
}

impl GuestServer {
    /// Binds `path`, replacing a stale socket (never a regular file).
    pub fn bind(path: impl Into<PathBuf>, emu: Arc<Emulator>) -> io::Result<Self> {
        let path = path.into();
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(&path)?;
        Ok(Self {
            listener,
            path,
            emu,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections one after another on a background thread.
    pub fn spawn(self) -> thread::JoinHandle<()> {
        thread::Builder::new()
            .name("guest".into())
            .spawn(move || {
                for stream in self.listener.incoming() {
                    match stream {
                        Ok(stream) => Session::new(&self.emu, stream).serve(),
                        Err(e) => tracing::warn!("guest accept: {e}"),
                    }
                }
            })
            .expect("spawning the guest thread")
    }
}

/// One guest connection.
struct Session<'a> {
    emu: &'a Emulator,
    stream: UnixStream,
    decoder: FrameDecoder,
    greeted: bool,
}

enum Next {
    Continue,
    Close,
}

impl<'a> Session<'a> {
    fn new(emu: &'a Emulator, stream: UnixStream) -> Self {
        Self {
            emu,
            stream,
            decoder: FrameDecoder::new(),
            greeted: false,
        }
    }

    fn serve(mut self) {
        let mut buf = zeroize::Zeroizing::new(vec![0u8; 16 * 1024]);
        loop {
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            self.decoder.push(&buf[..n]);
            while let Some(frame) = self.decoder.next_frame() {
                if let Next::Close = self.on_frame(frame) {
                    let _ = self.stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    }

    fn send(&mut self, msg: FromModule) -> Next {
        let body = zeroize::Zeroizing::new(msg.encode());
        self.emu
            .device()
            .trace
            .record(Direction::ModuleToHost, &body);
        let framed = zeroize::Zeroizing::new(wire::frame(&body));
        match self.stream.write_all(&framed) {
            Ok(()) => Next::Continue,
            Err(_) => Next::Close,
        }
    }

    fn error(&mut self, id: u32, code: i32) -> Next {
        self.send(FromModule::Response {
            id,
            result: Err(code),
        })
    }

    fn on_frame(&mut self, frame: Frame) -> Next {
        let body = match frame {
            Frame::BadLength(len) => {
                tracing::debug!("guest frame with bad length {len}: resynchronising");
                return self.error(0, ZK_ERR_PROTOCOL);
            }
            Frame::Body(body) => zeroize::Zeroizing::new(body),
        };
        self.emu
            .device()
            .trace
            .record(Direction::HostToModule, &body);
        match ToModule::decode(&body) {
            Err((id, e)) => {
                tracing::debug!("malformed guest message: {e}");
                self.error(id.unwrap_or(0), ZK_ERR_PROTOCOL)
            }
            Ok(ToModule::Hello(hello)) => {
                if hello.min_version <= wire::PROTOCOL_VERSION
                    && wire::PROTOCOL_VERSION <= hello.max_version
                {
                    self.greeted = true;
                    self.send(FromModule::HelloReply {
                        version: wire::PROTOCOL_VERSION,
                        nonce: hello.nonce,
                    })
                } else {
                    self.greeted = false;
                    self.error(0, ZK_ERR_PROTOCOL)
                }
            }
            Ok(ToModule::Request { id, .. }) if !self.greeted => self.error(id, ZK_ERR_PROTOCOL),
            Ok(ToModule::Request { id, op }) => {
                let (delay, fail, flip) = match self.emu.plan() {
                    Plan::Drop => return Next::Close,
                    Plan::Crash => crash(),
                    Plan::Answer { delay, fail, flip } => (delay, fail, flip),
                };
                if let Some(d) = delay {
                    thread::sleep(d);
                }
                let mut result = match fail {
                    Some(code) => Err(code),
                    None => self.emu.execute(op),
                };
                if flip {
                    flip_a_bit(&mut result);
                }
                self.send(FromModule::Response { id, result })
            }
        }
    }
}

fn flip_a_bit(result: &mut Result<Reply, i32>) {
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    let r = u32::from_ne_bytes(r) as usize;
    let bytes: &mut [u8] = match result {
        Ok(Reply::Bytes(b)) => b.as_mut_slice(),
        Ok(Reply::Text(t)) if !t.is_empty() => {
            // Keep it valid UTF-8 on the wire: flip within ASCII letters' low bit.
            let mut b = std::mem::take(t).into_bytes();
            let i = r % b.len();
            if b[i].is_ascii_alphanumeric() {
                b[i] ^= 1;
            }
            *t = String::from_utf8_lossy(&b).into_owned();
            return;
        }
        _ => return,
    };
    if !bytes.is_empty() {
        let bit = r % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
    }
}

/// The `crash` fault: the process dies at once, as under `kill -9` (no answer, no flush).
fn crash() -> ! {
    tracing::warn!("crash fault: killing the emulator process");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort()
}
