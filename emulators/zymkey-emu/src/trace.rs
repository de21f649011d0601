//! The bus trace: what a sniffer on the wire between host and module sees, frame by frame.
//! A real ZYMKEY4 talks I2C on the GPIO header in the clear; so does this trace, on purpose:
//! an unlock shows the secret.

use serde::Serialize;
use std::collections::VecDeque;

/// Entries kept before the oldest are dropped.
pub const TRACE_CAPACITY: usize = 10_000;

/// Direction of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Host software to module.
    HostToModule,
    /// Module to host software.
    ModuleToHost,
}

/// One frame seen on the wire.
#[derive(Debug, Clone, Serialize)]
pub struct TraceEntry {
    /// Sequence number.
    pub seq: u64,
    /// Direction.
    pub dir: Direction,
    /// The frame body, hex.
    pub hex: String,
}

/// The recorder.
#[derive(Debug, Default)]
pub struct BusTrace {
    on: bool,
    seq: u64,
    entries: VecDeque<TraceEntry>,
}

impl BusTrace {
    /// Turns recording on or off (entries stay until read with `clear`).
    pub fn set(&mut self, on: bool) {
        self.on = on;
    }

    /// Whether recording is on.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Records a frame body if recording is on.
    pub fn record(&mut self, dir: Direction, body: &[u8]) {
        if !self.on {
            return;
        }
        self.seq += 1;
        if self.entries.len() == TRACE_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(TraceEntry {
            seq: self.seq,
            dir,
            hex: hex::encode(body),
        });
    }

    /// The recorded entries, optionally clearing them.
    pub fn read(&mut self, clear: bool) -> Vec<TraceEntry> {
        let out = self.entries.iter().cloned().collect();
        if clear {
            self.entries.clear();
        }
        out
    }
}
