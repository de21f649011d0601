//! An attacker's debugger on the board's debug port (a Pi's JTAG on the GPIO header, opened by
//! `enable_jtag_gpio=1`; QEMU's gdb stub here): the probe proves the port is live by halting the
//! CPU and reading where it stopped, then lets it run on.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A gdb remote-protocol packet: `$payload#checksum`.
fn packet(payload: &str) -> String {
    let sum = payload.bytes().fold(0u8, |acc, b| acc.wrapping_add(b));
    format!("${payload}#{sum:02x}")
}

/// Reads until one whole packet (`$…#xx`) arrived or the time is up; the payload.
fn read_packet(stream: &mut UnixStream, deadline: Instant) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
        let text = String::from_utf8_lossy(&got);
        if let Some(start) = text.find('$')
            && let Some(end) = text[start..].find('#')
            && text.len() >= start + end + 3
        {
            return Some(text[start + 1..start + end].to_string());
        }
    }
    None
}

/// Connects to the debug port, asks why the CPU stopped (QEMU halts the guest when a debugger
/// attaches), then continues it and detaches. A line for the transcript saying what happened.
pub(crate) fn probe(socket: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return format!("debug port: could not attach a debugger: {e}"),
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if stream.write_all(packet("?").as_bytes()).is_err() {
        return "debug port: the debugger's first request failed".into();
    }
    let stop = read_packet(&mut stream, deadline);
    // Let the guest run on: continue, then detach.
    let _ = stream.write_all(format!("+{}", packet("c")).as_bytes());
    std::thread::sleep(Duration::from_millis(100));
    let _ = stream.write_all(format!("+{}", packet("D")).as_bytes());
    match stop {
        Some(reply) => format!(
            "debug port: an attached debugger halted the CPU (stop reply {reply}) and let it run on: it could have read memory and registers"
        ),
        None => "debug port: open, but the debugger got no stop reply".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_the_gdb_checksum() {
        assert_eq!(packet("?"), "$?#3f");
        assert_eq!(packet("c"), "$c#63");
    }
}
