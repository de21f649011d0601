//! Unix-socket transport: runs a [`HidDevice`] for one usbredir connection at a time.
//!
//! Which side is the server: by default **this crate listens** ([`DeviceServer::listen`]) and
//! QEMU's chardev connects as a client (`-chardev socket,id=ur0,path=SOCK` without
//! `server=on`; at run time QMP `chardev-add` with `reconnect-ms` if this side may not be
//! listening yet). The other way round, QEMU listens (`server=on,wait=off`) and
//! [`DeviceServer::connect`] connects to it and serves that single connection.
//!
//! A connection is a plug: the device is plugged when the hellos are exchanged and unplugged
//! when the connection closes. While one connection is active, further connections are
//! closed at once, so no second board reaches the device. A new connection plugs it again.

use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use crate::descriptors::{DescriptorError, Descriptors};
use crate::device::{HidDevice, InputReports};
use crate::session::{Event, Session};

/// Messages into the server loop.
#[derive(Debug)]
pub(crate) enum LoopMsg {
    /// A new connection accepted by the listener thread.
    Connection(UnixStream),
    /// Bytes received on connection `conn`.
    Bytes { conn: u64, bytes: Vec<u8> },
    /// Connection `conn` closed (EOF or read error).
    Closed { conn: u64 },
    /// An input report from the application.
    Input(Vec<u8>),
    /// Unplug the device, keeping the connection.
    Unplug,
    /// Plug the device again on the current connection.
    Plug,
    /// Stop the server.
    Shutdown,
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The device's identity does not make valid descriptors.
    #[error("invalid device identity: {0}")]
    Descriptors(#[from] DescriptorError),
    /// Could not bind the listening socket.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Could not connect to QEMU's socket.
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A path exists where the socket should be and is not a socket.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Could not start a thread or clone a socket.
    #[error("server setup failed: {0}")]
    Setup(io::Error),
}

enum Source {
    Listener {
        listener: UnixListener,
        path: PathBuf,
    },
    Stream(UnixStream),
}

/// Controls a running [`DeviceServer`] from other threads.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    tx: mpsc::Sender<LoopMsg>,
    stop: Arc<AtomicBool>,
    path: Option<PathBuf>,
}

impl ServerHandle {
    /// A handle for sending input reports.
    pub fn input_reports(&self) -> InputReports {
        InputReports::new(self.tx.clone())
    }

    /// Unplugs the device (usbredir device_disconnect) but keeps the connection.
    pub fn unplug(&self) {
        let _ = self.tx.send(LoopMsg::Unplug);
    }

    /// Plugs the device again after [`ServerHandle::unplug`].
    pub fn plug(&self) {
        let _ = self.tx.send(LoopMsg::Plug);
    }

    /// Stops the server: unplugs, closes the connection and the listening socket.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.tx.send(LoopMsg::Shutdown);
        // Wake the accepting thread so it sees the stop flag.
        if let Some(path) = &self.path {
            let _ = UnixStream::connect(path);
        }
    }
}

struct Conn {
    id: u64,
    stream: UnixStream,
    session: Session,
}

/// Serves one [`HidDevice`] over usbredir on a unix socket.
pub struct DeviceServer<D> {
    device: D,
    descriptors: Descriptors,
    source: Source,
    tx: mpsc::Sender<LoopMsg>,
    rx: mpsc::Receiver<LoopMsg>,
    stop: Arc<AtomicBool>,
}

impl<D: HidDevice> DeviceServer<D> {
    /// Listens on `path` (QEMU's chardev connects to it). A stale socket at `path` is replaced;
    /// any other file there is an error.
    pub fn listen(path: impl AsRef<Path>, device: D) -> Result<DeviceServer<D>, ServerError> {
        let path = path.as_ref().to_path_buf();
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(ServerError::NotASocket(path));
            }
            let _ = std::fs::remove_file(&path);
        }
        let listener = UnixListener::bind(&path).map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?;
        Self::with_source(Source::Listener { listener, path }, device)
    }

    /// Connects to QEMU's listening socket at `path` (`server=on`) and serves that one
    /// connection; [`DeviceServer::run`] returns when it closes.
    pub fn connect(path: impl AsRef<Path>, device: D) -> Result<DeviceServer<D>, ServerError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| ServerError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Self::with_source(Source::Stream(stream), device)
    }

    fn with_source(source: Source, device: D) -> Result<DeviceServer<D>, ServerError> {
        let descriptors = Descriptors::build(&device.identity())?;
        let (tx, rx) = mpsc::channel();
        Ok(DeviceServer {
            device,
            descriptors,
            source,
            tx,
            rx,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A handle to send input reports, unplug, replug or stop the server.
    pub fn handle(&self) -> ServerHandle {
        let path = match &self.source {
            Source::Listener { path, .. } => Some(path.clone()),
            Source::Stream(_) => None,
        };
        ServerHandle {
            tx: self.tx.clone(),
            stop: Arc::clone(&self.stop),
            path,
        }
    }

    /// Runs until [`ServerHandle::shutdown`] (or, for [`DeviceServer::connect`], until the
    /// connection closes). Returns the device.
    pub fn run(mut self) -> Result<D, ServerError> {
        let inputs = InputReports::new(self.tx.clone());
        let mut conn: Option<Conn> = None;
        let mut next_id = 0u64;
        let listening = match &self.source {
            Source::Listener { listener, path } => {
                let listener = listener.try_clone().map_err(ServerError::Setup)?;
                let tx = self.tx.clone();
                let stop = Arc::clone(&self.stop);
                thread::Builder::new()
                    .name("usbredir-accept".into())
                    .spawn(move || accept_loop(listener, tx, stop))
                    .map_err(ServerError::Setup)?;
                tracing::info!(path = %path.display(), "usbredir device listening");
                true
            }
            Source::Stream(stream) => {
                let stream = stream.try_clone().map_err(ServerError::Setup)?;
                conn = Some(self.open(stream, next_id)?);
                next_id += 1;
                false
            }
        };

        while let Ok(msg) = self.rx.recv() {
            match msg {
                LoopMsg::Connection(stream) => {
                    if conn.is_some() || self.stop.load(Ordering::SeqCst) {
                        tracing::warn!("refused a second usbredir connection");
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        continue;
                    }
                    match self.open(stream, next_id) {
                        Ok(c) => conn = Some(c),
                        Err(err) => tracing::warn!(%err, "could not start a connection"),
                    }
                    next_id += 1;
                }
                LoopMsg::Bytes { conn: id, bytes } => {
                    let Some(c) = conn.as_mut().filter(|c| c.id == id) else {
                        continue;
                    };
                    let result = c.session.receive(&bytes);
                    self.dispatch(c, &inputs);
                    let flushed = flush(c);
                    if let Err(err) = &result {
                        tracing::warn!(%err, "closing the usbredir connection");
                    }
                    if result.is_err() || flushed.is_err() {
                        self.close(&mut conn);
                        if !listening {
                            break;
                        }
                    }
                }
                LoopMsg::Closed { conn: id } => {
                    if conn.as_ref().is_some_and(|c| c.id == id) {
                        tracing::info!("usbredir connection closed");
                        self.close(&mut conn);
                        if !listening {
                            break;
                        }
                    }
                }
                LoopMsg::Input(report) => {
                    let Some(c) = conn.as_mut() else {
                        tracing::debug!("input report dropped: no connection");
                        continue;
                    };
                    if let Err(err) = c.session.send_input_report(&report) {
                        tracing::debug!(%err, "input report dropped");
                    }
                    if flush(c).is_err() {
                        self.close(&mut conn);
                    }
                }
                LoopMsg::Unplug | LoopMsg::Plug => {
                    let Some(c) = conn.as_mut() else { continue };
                    let was_plugged = c.session.is_plugged();
                    if matches!(msg, LoopMsg::Unplug) {
                        c.session.unplug();
                        if was_plugged {
                            self.device.on_unplugged();
                        }
                    } else {
                        c.session.plug();
                    }
                    self.dispatch(c, &inputs);
                    if flush(c).is_err() {
                        self.close(&mut conn);
                    }
                }
                LoopMsg::Shutdown => break,
            }
        }
        if let Some(c) = conn.as_mut() {
            c.session.unplug();
            let _ = flush(c);
        }
        self.close(&mut conn);
        if let Source::Listener { path, .. } = &self.source {
            let _ = std::fs::remove_file(path);
        }
        Ok(self.device)
    }

    fn open(&mut self, stream: UnixStream, id: u64) -> Result<Conn, ServerError> {
        let reader = stream.try_clone().map_err(ServerError::Setup)?;
        let tx = self.tx.clone();
        thread::Builder::new()
            .name("usbredir-read".into())
            .spawn(move || read_loop(reader, id, tx))
            .map_err(ServerError::Setup)?;
        let mut conn = Conn {
            id,
            stream,
            session: Session::new(self.descriptors.clone()),
        };
        tracing::info!("usbredir connection opened");
        flush(&mut conn).map_err(ServerError::Setup)?;
        Ok(conn)
    }

    fn dispatch(&mut self, conn: &mut Conn, inputs: &InputReports) {
        while let Some(event) = conn.session.poll_event() {
            match event {
                Event::Plugged { host_version } => {
                    tracing::info!(host = %host_version, "device plugged");
                    self.device.on_plugged(inputs);
                }
                Event::OutputReport(report) => self.device.on_output_report(&report, inputs),
                Event::Reset => self.device.on_reset(),
                Event::Rejected => self.device.on_unplugged(),
            }
        }
    }

    fn close(&mut self, conn: &mut Option<Conn>) {
        if let Some(c) = conn.take() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            if c.session.is_plugged() {
                self.device.on_unplugged();
            }
        }
    }
}

fn flush(conn: &mut Conn) -> io::Result<()> {
    if conn.session.has_outgoing() {
        let bytes = conn.session.take_outgoing();
        conn.stream.write_all(&bytes)?;
    }
    Ok(())
}

fn accept_loop(listener: UnixListener, tx: mpsc::Sender<LoopMsg>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                if tx.send(LoopMsg::Connection(stream)).is_err() {
                    break;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

fn read_loop(mut stream: UnixStream, conn: u64, tx: mpsc::Sender<LoopMsg>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let bytes = buf[..n].to_vec();
                if tx.send(LoopMsg::Bytes { conn, bytes }).is_err() {
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::debug!(%err, "usbredir read failed");
                break;
            }
        }
    }
    let _ = tx.send(LoopMsg::Closed { conn });
}
