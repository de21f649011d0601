//! The serial console driver: the board's UART (through a USB adapter on the controller) fed
//! into a [`board::Console`], which keeps the timestamped transcript and the expect API every
//! target shares. `send` on the console writes to the port.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use board::Console;
use serialport::{SerialPort, TTYPort};

use crate::RigError;

/// How often the reader looks whether it should stop.
const POLL: Duration = Duration::from_millis(100);

/// A serial port attached to a console; dropping it detaches (the console then reads closed).
#[derive(Debug)]
pub struct SerialConsole {
    device: PathBuf,
    stop: Arc<AtomicBool>,
}

/// Reads the port until told to stop; read timeouts are not the end of the output.
struct PortReader {
    port: TTYPort,
    stop: Arc<AtomicBool>,
}

impl Read for PortReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(0);
            }
            match self.port.read(buf) {
                Ok(0) => continue,
                Ok(n) => return Ok(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Writes to the port (what `Console::send` types).
struct PortWriter(TTYPort);

impl Write for PortWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl SerialConsole {
    /// Opens `device` at `baud` (8N1, no flow control) and feeds it into `console`.
    pub fn open(device: &Path, baud: u32, console: &Console) -> Result<Self, RigError> {
        let port = serialport::new(device.to_string_lossy(), baud)
            .timeout(POLL)
            .open_native()
            .map_err(|e| RigError::Serial {
                device: device.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::attach(port, device, console)
    }

    /// Feeds an open port into `console` (`device` names it in errors).
    pub fn attach(mut port: TTYPort, device: &Path, console: &Console) -> Result<Self, RigError> {
        let err = |e: serialport::Error| RigError::Serial {
            device: device.to_path_buf(),
            reason: e.to_string(),
        };
        port.set_timeout(POLL).map_err(err)?;
        let writer = port.try_clone_native().map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        console.attach(
            PortReader {
                port,
                stop: Arc::clone(&stop),
            },
            PortWriter(writer),
        );
        Ok(Self {
            device: device.to_path_buf(),
            stop,
        })
    }

    /// The device.
    pub fn device(&self) -> &Path {
        &self.device
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
