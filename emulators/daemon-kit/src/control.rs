//! The control socket: JSON lines over a unix socket, one thread per connection.
//!
//! Request: one JSON object on one line, shaped by the daemon's [`ControlHandler::Request`]
//! (usually `{"cmd":"…",…}`). Reply: one line, `{"ok":true,"result":…}` or
//! `{"ok":false,"error":"…"}`. A malformed request gets an error reply and the connection stays
//! open; a line over [`MAX_LINE`] bytes gets an error reply and the connection is closed.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The longest request or reply line accepted, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// What a daemon does with control requests.
pub trait ControlHandler: Send + Sync + 'static {
    /// The request type, parsed from one JSON line.
    type Request: DeserializeOwned;
    /// The reply type, sent as `result`.
    type Reply: Serialize;
    /// Handles one request; an `Err` is sent as the `error` text.
    fn handle(&self, request: Self::Request) -> Result<Self::Reply, String>;
}

/// Errors of the control socket, on either side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be bound, connected, read or written.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Something exists at the socket path that is not a socket.
    #[error("control socket path {0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// The daemon answered with an error.
    #[error("daemon refused the request: {0}")]
    Refused(String),
    /// The daemon's reply was not a valid reply line.
    #[error("daemon sent a malformed reply: {0}")]
    BadReply(String),
}

/// A bound control socket, ready to serve.
pub struct ControlServer<H: ControlHandler> {
    listener: UnixListener,
    path: PathBuf,
    handler: Arc<H>,
}

impl<H: ControlHandler> ControlServer<H> {
    /// Binds the socket at `path`, replacing a stale socket file left by a dead daemon (the
    /// caller holds the state directory's lock, so no live daemon owns it).
    pub fn bind(path: impl Into<PathBuf>, handler: Arc<H>) -> Result<Self, ControlError> {
        let path = path.into();
        let io = |source| ControlError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path).map_err(io)?,
            Ok(_) => return Err(ControlError::NotASocket(path)),
            Err(_) => {}
        }
        let listener = UnixListener::bind(&path).map_err(io)?;
        Ok(Self {
            listener,
            path,
            handler,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections on a background thread, one thread per connection, until the process
    /// exits.
    pub fn spawn(self) -> thread::JoinHandle<()> {
        thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in self.listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let handler = Arc::clone(&self.handler);
                    let _ = thread::Builder::new()
                        .name("control-conn".into())
                        .spawn(move || serve_connection(&*handler, stream));
                }
            })
            .expect("spawning the control thread")
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes; `Ok(None)` at end of stream, `Err` on overflow.
fn read_bounded_line(reader: &mut impl BufRead) -> io::Result<Option<Result<String, ()>>> {
    let mut buf = Vec::new();
    let n = reader
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE {
        return Ok(Some(Err(())));
    }
    Ok(Some(Ok(String::from_utf8_lossy(&buf).into_owned())))
}

/// Turns one request line into one reply line (without the newline).
fn reply_line<H: ControlHandler>(handler: &H, line: &str) -> String {
    let reply = match serde_json::from_str::<H::Request>(line) {
        Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        Ok(request) => match handler.handle(request) {
            Ok(result) => match serde_json::to_value(result) {
                Ok(result) => json!({"ok": true, "result": result}),
                Err(e) => json!({"ok": false, "error": format!("reply not serialisable: {e}")}),
            },
            Err(error) => json!({"ok": false, "error": error}),
        },
    };
    reply.to_string()
}

fn serve_connection<H: ControlHandler>(handler: &H, stream: UnixStream) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = io::BufWriter::new(write_half);
    let mut reader = BufReader::new(stream);
    loop {
        let reply = match read_bounded_line(&mut reader) {
            Ok(None) | Err(_) => return,
            Ok(Some(Err(()))) => {
                let _ = writeln!(
                    writer,
                    "{}",
                    json!({"ok": false, "error": "request line too long"})
                );
                let _ = writer.flush();
                return;
            }
            Ok(Some(Ok(line))) if line.trim().is_empty() => continue,
            Ok(Some(Ok(line))) => reply_line(handler, line.trim()),
        };
        if writeln!(writer, "{reply}")
            .and_then(|_| writer.flush())
            .is_err()
        {
            return;
        }
    }
}

/// A client of a control socket (the harness side).
pub struct ControlClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects to the socket at `path`; requests time out after `timeout`.
    pub fn connect(path: impl Into<PathBuf>, timeout: Duration) -> Result<Self, ControlError> {
        let path = path.into();
        let io = |source| ControlError::Io {
            path: path.clone(),
            source,
        };
        let stream = UnixStream::connect(&path).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
            path,
        })
    }

    /// Sends one request and returns the `result` of a successful reply.
    pub fn request(&mut self, request: &impl Serialize) -> Result<Value, ControlError> {
        let io = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        let line =
            serde_json::to_string(request).map_err(|e| ControlError::BadReply(e.to_string()))?;
        writeln!(self.writer, "{line}").map_err(io)?;
        let reply = match read_bounded_line(&mut self.reader).map_err(io)? {
            None => return Err(ControlError::BadReply("connection closed".into())),
            Some(Err(())) => return Err(ControlError::BadReply("reply line too long".into())),
            Some(Ok(reply)) => reply,
        };
        let mut reply: Value =
            serde_json::from_str(&reply).map_err(|e| ControlError::BadReply(e.to_string()))?;
        match reply.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(reply
                .get_mut("result")
                .map(Value::take)
                .unwrap_or(Value::Null)),
            Some(false) => Err(ControlError::Refused(
                reply
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("(no reason given)")
                    .into(),
            )),
            None => Err(ControlError::BadReply(reply.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::sync::Mutex;

    #[derive(Deserialize)]
    #[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
    enum Request {
        Add { n: u32 },
        Fail,
    }

    #[derive(Default)]
    struct Counter(Mutex<u32>);

    impl ControlHandler for Counter {
        type Request = Request;
        type Reply = u32;
        fn handle(&self, request: Request) -> Result<u32, String> {
            match request {
                Request::Add { n } => {
                    let mut total = self.0.lock().unwrap();
                    *total += n;
                    Ok(*total)
                }
                Request::Fail => Err("asked to fail".into()),
            }
        }
    }

    fn server() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        ControlServer::bind(&path, Arc::new(Counter::default()))
            .unwrap()
            .spawn();
        (tmp, path)
    }

    #[test]
    fn requests_get_results_and_errors_keep_the_connection() {
        let (_tmp, path) = server();
        let mut client = ControlClient::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(
            client.request(&json!({"cmd": "add", "n": 2})).unwrap(),
            json!(2)
        );
        match client.request(&json!({"cmd": "fail"})) {
            Err(ControlError::Refused(e)) => assert_eq!(e, "asked to fail"),
            other => panic!("{other:?}"),
        }
        match client.request(&json!({"cmd": "add", "n": 1, "extra": true})) {
            Err(ControlError::Refused(e)) => assert!(e.starts_with("bad request"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            client.request(&json!({"cmd": "add", "n": 3})).unwrap(),
            json!(5)
        );
    }

    #[test]
    fn garbage_lines_get_error_replies_and_an_overlong_line_closes() {
        let (_tmp, path) = server();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.write_all(b"not json\n\xff\xfe\n").unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for _ in 0..2 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.contains("\"ok\":false"), "{line}");
        }
        stream.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("too long"), "{rest}");
    }

    #[test]
    fn binding_over_a_regular_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        std::fs::write(&path, b"precious").unwrap();
        assert!(matches!(
            ControlServer::bind(&path, Arc::new(Counter::default())),
            Err(ControlError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    proptest::proptest! {
        #[test]
        fn any_line_gets_exactly_one_reply_object(line in "[^\n]{0,200}") {
            let reply: Value = serde_json::from_str(&reply_line(&Counter::default(), &line)).unwrap();
            proptest::prop_assert!(reply.get("ok").and_then(Value::as_bool).is_some());
        }
    }
}
