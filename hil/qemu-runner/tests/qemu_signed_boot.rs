//! Emulated Raspberry Pi secure boot on QEMU boards (the `qemu` test group): a board with
//! [`SignedFirmware`] boots only a vendor-signed `boot.img`, ignores edits beside it and refuses
//! a changed one without starting QEMU; an unsigned board honours the same edit (the risk row).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use board::Board;
use board_kit::{BOOT_TIMEOUT, READY, new_board, repo, test_image};
use keybound_vendor::boot::{BootFiles, BootKey, build_boot_img};
use qemu_runner::{QemuBoard, SignedFirmware, sign_card};

/// The vendor's key for this test run (RSA generation is slow in debug builds: one per binary).
fn vendor_key() -> &'static BootKey {
    static KEY: OnceLock<BootKey> = OnceLock::new();
    KEY.get_or_init(|| BootKey::generate().expect("generating the vendor key"))
}

/// A powered-off board whose card carries a boot.img + boot.sig signed with [`vendor_key`];
/// `secure` burns the key into the board (SignedFirmware), otherwise it keeps the stock firmware.
fn signed_card_board(name: &str, dir: &Path, secure: bool) -> QemuBoard {
    let image = test_image();
    let board = new_board(&repo(), &image, name, dir, |config| {
        if secure {
            config.firmware = Arc::new(SignedFirmware::new(vendor_key().public_key()));
        }
    })
    .expect("creating a board");
    sign_card(board.card().unwrap(), vendor_key(), 1_764_000_000).expect("signing the card");
    board
}

/// Appends `marker` to the card's cmdline.txt on the boot partition (outside boot.img).
fn edit_cmdline_beside_boot_img(board: &QemuBoard, marker: &str) {
    let card = board.card().unwrap();
    let original = String::from_utf8(card.read_boot_file("cmdline.txt").unwrap()).unwrap();
    card.write_boot_file(
        "cmdline.txt",
        format!("{} {marker}\n", original.trim()).as_bytes(),
    )
    .unwrap();
}

fn console_has(board: &QemuBoard, text: &str) -> bool {
    board
        .console()
        .lines()
        .iter()
        .any(|line| line.text.contains(text))
}

#[test]
fn qemu_signed_board_boots_the_signed_image_and_ignores_cmdline_txt_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut board = signed_card_board("signed", dir.path(), true);
    let marker = format!("init=/bin/sh keybound.edited={}", std::process::id());
    edit_cmdline_beside_boot_img(&board, &marker);
    board.power_on().unwrap();
    board.console().expect(READY, BOOT_TIMEOUT).unwrap();
    let plan = board.last_boot_plan().unwrap().clone();
    assert_eq!(plan.files[..2], ["boot.img", "boot.sig"], "{plan:?}");
    assert!(!plan.cmdline.contains("keybound.edited"), "{plan:?}");
    let cmdline = board.maintenance_exec("cat /proc/cmdline").unwrap();
    assert!(
        !cmdline.contains("keybound.edited") && !cmdline.contains("init=/bin/sh"),
        "the edit beside boot.img reached the kernel: {cmdline:?}"
    );
    assert!(console_has(
        &board,
        "firmware boots boot.img, boot.sig, boot.img:config.txt"
    ));
    board.power_cut().unwrap();
}

#[test]
fn qemu_unsigned_board_honours_the_same_edit_risk_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut board = signed_card_board("unsigned", dir.path(), false);
    let marker = format!("keybound.edited={}", std::process::id());
    edit_cmdline_beside_boot_img(&board, &marker);
    board.power_on().unwrap();
    board.console().expect(READY, BOOT_TIMEOUT).unwrap();
    let cmdline = board.maintenance_exec("cat /proc/cmdline").unwrap();
    assert!(
        cmdline.contains(&marker),
        "without secure boot the edit takes effect: {cmdline:?}"
    );
    board.power_cut().unwrap();
}

#[test]
fn qemu_signed_board_refuses_a_changed_boot_img_without_starting_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let mut board = signed_card_board("refuse", dir.path(), true);
    let card = board.card().unwrap();

    // The attacker rebuilds boot.img with their own cmdline.txt and keeps the vendor's boot.sig.
    let available = card.list_boot_files().unwrap();
    let mut files = BootFiles::select(&available, |name| card.read_boot_file(name)).unwrap();
    let cmdline = String::from_utf8(card.read_boot_file("cmdline.txt").unwrap()).unwrap();
    files.set(
        "cmdline.txt",
        format!("{} init=/bin/sh\n", cmdline.trim()).into_bytes(),
    );
    card.write_boot_file("boot.img", &build_boot_img(&files).unwrap())
        .unwrap();
    let err = board.power_on().unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(!board.is_powered());
    assert!(board.qemu_pid().is_none(), "no QEMU was started");
    assert!(
        console_has(
            &board,
            "[harness] firmware: boot refused: secure boot: boot.img does not match the sha256 in boot.sig"
        ),
        "{:?}",
        board.console().lines()
    );

    // An emptied boot.img: refused too (the ROM never falls back to the loose files).
    let card = board.card().unwrap();
    card.write_boot_file("boot.img", b"").unwrap();
    let err = board.power_on().unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(board.qemu_pid().is_none());
}
