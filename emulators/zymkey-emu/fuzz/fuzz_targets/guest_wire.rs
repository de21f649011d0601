//! Guest wire: arbitrary byte streams through the module's frame decoder and message parser;
//! whatever parses must re-encode to the same message, and must execute without panicking.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zymkey_emu::Emulator;
use zymkey_emu::wire::{Frame, FrameDecoder, FromModule, Op, ToModule};

fn emulator() -> &'static Emulator {
    static EMU: OnceLock<Emulator> = OnceLock::new();
    EMU.get_or_init(|| {
        let emu = Emulator::in_memory(Some([7; 32]));
        let attach = serde_json::json!({"cmd": "attach", "board": "b", "card": "c"});
        daemon_kit::ControlHandler::handle(&emu, serde_json::from_value(attach).unwrap()).unwrap();
        emu
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = FromModule::decode(data);
    let mut decoder = FrameDecoder::new();
    // Feed in uneven chunks, as a serial port would deliver them.
    for chunk in data.chunks(7) {
        decoder.push(chunk);
        while let Some(frame) = decoder.next_frame() {
            let Frame::Body(body) = frame else { continue };
            assert!(!body.is_empty() && body.len() <= zymkey_emu::wire::MAX_FRAME);
            if let Ok(msg) = ToModule::decode(&body) {
                assert_eq!(ToModule::decode(&msg.encode()).ok(), Some(msg.clone()));
                if let ToModule::Request { op, .. } = msg {
                    // Waits and precise time block by design; everything else must answer.
                    if !matches!(
                        op,
                        Op::WaitTap { .. } | Op::WaitPerimeter { .. } | Op::GetTime { precise: true }
                    ) {
                        let _ = emulator().execute(op);
                    }
                }
            }
        }
    }
});
