//! The whole Zymkey path in a QEMU guest: an aarch64 program (`zymkey-probe`, the production
//! client) → the drop-in `libzk_app_utils.so` → the virtio-serial port `io.keybound.zymkey` →
//! this daemon on the host. Then the binding: the same module seen from another board.

use std::path::Path;

use board::Board;
use board_kit::{BOOT_TIMEOUT, READY, new_board, repo, test_image};
use serde_json::json;

#[test]
fn qemu_guest_random_and_lock_unlock_through_virtio_serial() {
    let image = test_image();
    let dir = tempfile::tempdir().unwrap();
    let sockets = tempfile::Builder::new().prefix("zk-").tempdir().unwrap();
    let program = Path::new(env!("CARGO_BIN_EXE_zymkey-emu"));
    let module = qemu_runner::ZymkeyModule::start_program(
        program,
        &dir.path().join("module"),
        sockets.path(),
    )
    .unwrap();
    let mut board = new_board(&repo(), &image, "pi", dir.path(), |c| {
        c.zymkey_socket = Some(module.guest_socket().to_path_buf())
    })
    .unwrap();
    module
        .attach(&board.config().board_serial, board.card().unwrap().serial())
        .unwrap();
    module
        .control(json!({"cmd": "bus-trace", "on": true}))
        .unwrap();

    board.power_on().unwrap();
    board.console().expect(READY, BOOT_TIMEOUT).unwrap();
    let out = board.maintenance_exec("zymkey-probe").unwrap();
    assert!(out.contains("model: ZYMKEY4"), "{out}");
    assert!(
        out.contains("random: 32 bytes") && out.contains("lock/unlock: ok"),
        "{out}"
    );
    // The calls really crossed the wire to this daemon.
    let trace = module
        .control(json!({"cmd": "bus-trace-read", "clear": true}))
        .unwrap();
    assert!(
        trace["entries"].as_array().is_some_and(|e| e.len() >= 4),
        "bus trace: {trace}"
    );

    // Production mode: the same module on another board stops every security service, and the
    // production client in the guest says so.
    module.control(json!({"cmd": "cut-tab"})).unwrap();
    module
        .attach("another-board", board.card().unwrap().serial())
        .unwrap();
    let refused = board
        .maintenance_exec("zymkey-probe 2>&1; echo exit=$?")
        .unwrap();
    assert!(refused.contains("exit=1"), "{refused}");
    assert!(
        refused.contains("binding"),
        "the client names the binding failure: {refused}"
    );
    board.power_cut().unwrap();
}
