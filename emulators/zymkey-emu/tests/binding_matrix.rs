//! Zymbit's binding matrix (REFERENCES.md "ZYMKEY4"), table-driven: developer and production
//! mode × same board / other board / copied card / other module / spoofed fingerprint.

use daemon_kit::ControlHandler;
use serde_json::{Value, json};
use zeroize::Zeroizing;
use zymkey_emu::Emulator;
use zymkey_emu::codes::{ZK_ERR_BINDING, ZK_ERR_BLOB_FOREIGN};
use zymkey_emu::control::ControlRequest;
use zymkey_emu::wire::{Op, Reply};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Developer,
    Production,
}

#[derive(Debug, Clone, Copy)]
enum Case {
    SameBoard,
    OtherBoard,
    CopiedCard,
    OtherModule,
    SpoofedFingerprint,
}

/// `Ok(())` = unlocks; `Err(code)` = locked, with that code.
const MATRIX: &[(Mode, Case, Result<(), i32>)] = &[
    (Mode::Developer, Case::SameBoard, Ok(())),
    (Mode::Developer, Case::OtherBoard, Ok(())),
    (Mode::Developer, Case::CopiedCard, Ok(())),
    (Mode::Developer, Case::OtherModule, Err(ZK_ERR_BLOB_FOREIGN)),
    (Mode::Developer, Case::SpoofedFingerprint, Ok(())),
    (Mode::Production, Case::SameBoard, Ok(())),
    (Mode::Production, Case::OtherBoard, Err(ZK_ERR_BINDING)),
    (Mode::Production, Case::CopiedCard, Err(ZK_ERR_BINDING)),
    (
        Mode::Production,
        Case::OtherModule,
        Err(ZK_ERR_BLOB_FOREIGN),
    ),
    // A "vendor claim" row: whoever can forge the fingerprint (a writable-CID card on another
    // board reporting the original ids) defeats production binding.
    (Mode::Production, Case::SpoofedFingerprint, Ok(())),
];

fn ctl(emu: &Emulator, request: Value) {
    let request: ControlRequest = serde_json::from_value(request).unwrap();
    emu.handle(request).unwrap();
}

fn attach(emu: &Emulator, board: &str, card: &str) {
    ctl(emu, json!({"cmd": "attach", "board": board, "card": card}));
}

fn module(secret: u8, mode: Mode) -> Emulator {
    let emu = Emulator::in_memory(Some([secret; 32]));
    attach(&emu, "pi-home", "sd-home");
    if let Mode::Production = mode {
        ctl(&emu, json!({"cmd": "cut-tab"}));
    }
    emu
}

fn unlock(emu: &Emulator, blob: &[u8]) -> Result<(), i32> {
    match emu.execute(Op::Unlock {
        shared: false,
        blob: blob.to_vec(),
    })? {
        Reply::Bytes(pt) if &pt[..] == b"sealed root secret" => Ok(()),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn binding_matrix() {
    for &(mode, case, expected) in MATRIX {
        let home = module(1, mode);
        let Reply::Bytes(blob) = home
            .execute(Op::Lock {
                shared: false,
                data: Zeroizing::new(b"sealed root secret".to_vec()),
            })
            .unwrap()
        else {
            panic!()
        };
        let got = match case {
            Case::SameBoard => unlock(&home, &blob),
            Case::OtherBoard => {
                attach(&home, "pi-other", "sd-home");
                unlock(&home, &blob)
            }
            Case::CopiedCard => {
                attach(&home, "pi-home", "sd-copy");
                unlock(&home, &blob)
            }
            Case::OtherModule => unlock(&module(2, mode), &blob),
            Case::SpoofedFingerprint => {
                attach(&home, "pi-other", "sd-copy");
                ctl(
                    &home,
                    json!({"cmd": "fault", "kind": "spoof", "board": "pi-home", "card": "sd-home"}),
                );
                unlock(&home, &blob)
            }
        };
        assert_eq!(got, expected, "{mode:?} × {case:?}");
    }
}

#[test]
fn production_on_a_foreign_host_stops_every_security_service() {
    let emu = module(1, Mode::Production);
    attach(&emu, "pi-other", "sd-home");
    let digest = [1u8; 32];
    let security = [
        Op::GetRandom { len: 8 },
        Op::Lock {
            shared: false,
            data: Zeroizing::new(vec![1]),
        },
        Op::Unlock {
            shared: false,
            blob: vec![0; 200],
        },
        Op::Sign { slot: 0, digest },
        Op::Verify {
            slot: 0,
            digest,
            sig: vec![0; 64],
        },
        Op::ExportPubKey {
            slot: 0,
            foreign: false,
        },
        Op::SetPerimeterAction {
            channel: 0,
            flags: 1,
        },
        Op::ClearPerimeter,
    ];
    for op in security {
        let name = op.name();
        assert_eq!(emu.execute(op), Err(ZK_ERR_BINDING), "{name}");
    }
    // Informational calls still answer, and report the failed binding.
    assert_eq!(
        emu.execute(Op::GetBindingInfo),
        Ok(Reply::Binding {
            locked: true,
            bound: false
        })
    );
    assert!(matches!(emu.execute(Op::GetSerial), Ok(Reply::Text(_))));
}

#[test]
fn developer_mode_follows_its_host_there_and_back() {
    let emu = module(1, Mode::Developer);
    let Reply::Bytes(blob) = emu
        .execute(Op::Lock {
            shared: false,
            data: Zeroizing::new(b"sealed root secret".to_vec()),
        })
        .unwrap()
    else {
        panic!()
    };
    for (board, card) in [("b2", "c2"), ("pi-home", "sd-home"), ("b3", "sd-home")] {
        attach(&emu, board, card);
        assert_eq!(unlock(&emu, &blob), Ok(()), "{board}/{card}");
        assert_eq!(
            emu.execute(Op::GetBindingInfo),
            Ok(Reply::Binding {
                locked: false,
                bound: true
            })
        );
    }
}
