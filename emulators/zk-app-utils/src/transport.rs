//! Reaching the module: the virtio-serial port named [`PORT_NAME`], or a unix socket named by
//! [`SOCKET_ENV`] (host tests). One call = open, Hello, one request, close; callers in other
//! processes are serialised by an exclusive `flock` on the port.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::codes;
use crate::wire::{self, FromModule, Hello, Op, Reply, ToModule};

/// The virtio-serial port name the module is reached through.
pub const PORT_NAME: &str = "io.keybound.zymkey";
/// Environment variable naming a unix socket to use instead of the port (host tests).
pub const SOCKET_ENV: &str = "KEYBOUND_ZK_SOCKET";
/// How long a call waits for the module, on top of any wait timeout it carries.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the module is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A virtio-serial port device (`/dev/vportNpM`).
    Port(PathBuf),
    /// A unix socket the daemon listens on.
    Socket(PathBuf),
}

impl Endpoint {
    /// Finds the module: the socket in [`SOCKET_ENV`] if set, else the port whose
    /// `/sys/class/virtio-ports/*/name` is [`PORT_NAME`].
    pub fn discover() -> Result<Self, i32> {
        if let Some(path) = std::env::var_os(SOCKET_ENV) {
            return Ok(Endpoint::Socket(path.into()));
        }
        Self::find_port(Path::new("/sys/class/virtio-ports"), Path::new("/dev"))
            .ok_or(codes::ZK_ERR_NO_MODULE)
    }

    fn find_port(sys: &Path, dev: &Path) -> Option<Self> {
        let entries = std::fs::read_dir(sys).ok()?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                std::fs::read_to_string(e.path().join("name"))
                    .map(|n| n.trim_end() == PORT_NAME)
                    .unwrap_or(false)
            })
            .map(|e| dev.join(e.file_name()))
            .collect();
        found.sort();
        found.into_iter().next().map(Endpoint::Port)
    }
}

enum Stream {
    Port(File),
    Socket(UnixStream),
}

impl Stream {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Port(f) => f.as_fd(),
            Stream::Socket(s) => s.as_fd(),
        }
    }

    /// Waits until the descriptor is ready for `events`: the events seen, `None` to try again
    /// (nothing yet, or interrupted), an error once `deadline` has passed.
    fn poll_by(
        &self,
        events: libc::c_short,
        deadline: Instant,
    ) -> Result<Option<libc::c_short>, i32> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(codes::ZK_ERR_IO);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd().as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is a valid pollfd for a descriptor this value owns, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if n < 0 {
            return match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => Ok(None),
                _ => Err(codes::ZK_ERR_IO),
            };
        }
        Ok((n > 0).then_some(pfd.revents))
    }

    /// Writes all of `bytes` before `deadline`. A virtio-serial port whose host side is gone
    /// (the module died) blocks writers forever: the descriptor is non-blocking and a hang-up
    /// with no room to write ends the call at once, as a dead module does.
    fn write_all_by(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), i32> {
        let mut done = 0;
        while done < bytes.len() {
            let Some(revents) = self.poll_by(libc::POLLOUT, deadline)? else {
                continue;
            };
            if revents & libc::POLLOUT == 0 {
                // POLLHUP or POLLERR without room: nobody is on the other end.
                return Err(codes::ZK_ERR_IO);
            }
            let wrote = match self {
                Stream::Port(f) => f.write(&bytes[done..]),
                Stream::Socket(s) => s.write(&bytes[done..]),
            };
            match wrote {
                Ok(0) => return Err(codes::ZK_ERR_IO),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(codes::ZK_ERR_IO),
            }
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes before `deadline`.
    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), i32> {
        let mut done = 0;
        while done < buf.len() {
            if self.poll_by(libc::POLLIN, deadline)?.is_none() {
                continue;
            }
            let got = match self {
                Stream::Port(f) => f.read(&mut buf[done..]),
                Stream::Socket(s) => s.read(&mut buf[done..]),
            };
            match got {
                Ok(0) => return Err(codes::ZK_ERR_IO),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(codes::ZK_ERR_IO),
            }
        }
        Ok(())
    }

    fn read_frame(&mut self, deadline: Instant) -> Result<FromModule, i32> {
        let mut len = [0u8; 4];
        self.read_exact_by(&mut len, deadline)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > wire::MAX_FRAME {
            return Err(codes::ZK_ERR_PROTOCOL);
        }
        let mut body = zeroize::Zeroizing::new(vec![0u8; len]);
        self.read_exact_by(&mut body, deadline)?;
        FromModule::decode(&body).map_err(|_| codes::ZK_ERR_PROTOCOL)
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // A failing OS RNG leaves a zero nonce: ids only match answers, they protect nothing.
    let _ = getrandom::fill(&mut b);
    u64::from_ne_bytes(b)
}

fn open_port(path: &Path, deadline: Instant) -> Result<File, i32> {
    loop {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => {
                // SAFETY: flock on a descriptor we own; blocks until other callers finish.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
                return if rc == 0 {
                    Ok(file)
                } else {
                    Err(codes::ZK_ERR_IO)
                };
            }
            // A virtio-serial port admits one opener: wait for the other caller.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(codes::ZK_ERR_NO_MODULE),
            Err(_) => return Err(codes::ZK_ERR_IO),
        }
    }
}

/// Performs one operation: open, Hello, request, answer, close. `extra` lengthens the timeout
/// (waits).
pub fn call(endpoint: &Endpoint, op: Op, extra: Duration) -> Result<Reply, i32> {
    let deadline = Instant::now() + CALL_TIMEOUT + extra;
    let mut stream = match endpoint {
        Endpoint::Port(p) => Stream::Port(open_port(p, deadline)?),
        Endpoint::Socket(p) => {
            let socket = UnixStream::connect(p).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    codes::ZK_ERR_NO_MODULE
                }
                _ => codes::ZK_ERR_IO,
            })?;
            socket.set_nonblocking(true).map_err(|_| codes::ZK_ERR_IO)?;
            Stream::Socket(socket)
        }
    };
    let nonce = random_u64();
    let hello = ToModule::Hello(Hello {
        min_version: wire::PROTOCOL_VERSION,
        max_version: wire::PROTOCOL_VERSION,
        nonce,
    });
    stream.write_all_by(&wire::frame(&hello.encode()), deadline)?;
    loop {
        match stream.read_frame(deadline)? {
            FromModule::HelloReply { version, nonce: n } if n == nonce => {
                if version != wire::PROTOCOL_VERSION {
                    return Err(codes::ZK_ERR_PROTOCOL);
                }
                break;
            }
            // Left over from an earlier caller on the same port.
            _ => continue,
        }
    }
    let id = (random_u64() as u32).max(1);
    let request = zeroize::Zeroizing::new(wire::frame(&ToModule::Request { id, op }.encode()));
    stream.write_all_by(&request, deadline)?;
    loop {
        match stream.read_frame(deadline)? {
            FromModule::Response { id: got, result } if got == id => return result,
            FromModule::Response {
                id: 0,
                result: Err(code),
            } => return Err(code),
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_found_by_name() {
        let tmp = std::env::temp_dir().join(format!("zk-sys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for (dir, name) in [
            ("vport0p1", "org.qemu.guest_agent.0"),
            ("vport1p2", PORT_NAME),
        ] {
            std::fs::create_dir_all(tmp.join(dir)).unwrap();
            std::fs::write(tmp.join(dir).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            Endpoint::find_port(&tmp, Path::new("/dev")),
            Some(Endpoint::Port("/dev/vport1p2".into()))
        );
        std::fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(Endpoint::find_port(&tmp, Path::new("/dev")), None);
    }
}
