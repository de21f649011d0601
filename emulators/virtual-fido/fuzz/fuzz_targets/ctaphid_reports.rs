//! Arbitrary OUT reports into the CTAPHID engine (with the real authenticator behind it, run
//! inline): no panic, and every IN report is well formed.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use virtual_fido::ctaphid::{CtapHid, EngineConfig, Packet};
use virtual_fido::transport::ReportSink;
use virtual_fido::{Token, TokenConfig};

struct Check;

impl ReportSink for Check {
    fn send_report(&self, report: [u8; 64]) {
        // The device only ever starts messages with commands it defines.
        if let Packet::Init { cmd, .. } = Packet::parse(&report) {
            assert!(
                matches!(cmd, 0x01 | 0x03 | 0x04 | 0x06 | 0x08 | 0x10 | 0x3B | 0x3F),
                "device sent command {cmd:#x}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let token = Token::in_memory(TokenConfig::default());
    let config = EngineConfig {
        inline: true,
        transaction_timeout: Duration::from_millis(5),
        ..EngineConfig::default()
    };
    let mut hid = CtapHid::new(token, Arc::new(Check), config);
    let start = Instant::now();
    // Channel 1 exists from the start so that short inputs reach the commands.
    let mut init = [0u8; 64];
    init[..7].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x86, 0x00, 0x08]);
    hid.on_out_report_at(&init, start);
    for (i, chunk) in data.chunks(64).enumerate() {
        let mut report = [0u8; 64];
        report[..chunk.len()].copy_from_slice(chunk);
        // Time advances 1 ms per report: transaction time-outs are exercised too.
        hid.on_out_report_at(&report, start + Duration::from_millis(i as u64));
    }
});
