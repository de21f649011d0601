//! A minimal QMP client: capabilities negotiation and synchronous commands (events skipped).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};

/// A QMP connection.
pub(crate) struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub(crate) fn connect(stream: UnixStream) -> Result<Self, String> {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("unexpected QMP greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        if self
            .reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("QMP connection closed".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("bad QMP message {line:?}: {e}"))
    }

    /// Runs a command and returns its `return` value.
    pub(crate) fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let request = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{request}").map_err(|e| e.to_string())?;
        loop {
            let mut message = self.read_message()?;
            if let Some(ret) = message.get_mut("return") {
                return Ok(ret.take());
            }
            if let Some(err) = message.get("error") {
                return Err(format!("QMP {command}: {err}"));
            }
        }
    }

    /// Runs a human monitor command and returns its text output.
    pub(crate) fn hmp(&mut self, command_line: &str) -> Result<String, String> {
        let out = self.execute(
            "human-monitor-command",
            json!({"command-line": command_line}),
        )?;
        Ok(out.as_str().unwrap_or_default().to_string())
    }
}

/// Reads the host ports QEMU chose for forwarded guest ports from `info usernet`.
pub(crate) fn forwarded_ports(info_usernet: &str) -> Vec<(u16, u16)> {
    info_usernet
        .lines()
        .filter(|l| l.contains("HOST_FORWARD"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Protocol[State] FD SrcAddr SrcPort DstAddr DstPort RecvQ SendQ
            Some((f.get(3)?.parse().ok()?, f.get(5)?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernet_table_gives_host_and_guest_ports() {
        let text = "Hub -1 (net0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  TCP[HOST_FORWARD]  14       127.0.0.1 41553       10.0.2.15    22     0     0\r\n  TCP[HOST_FORWARD]  13       127.0.0.1 40001       10.0.2.15  2222     0     0\r\n";
        assert_eq!(forwarded_ports(text), vec![(41553, 22), (40001, 2222)]);
    }
}
