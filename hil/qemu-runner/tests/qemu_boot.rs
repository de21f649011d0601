//! Boards booting the real guest image under QEMU (the `qemu` test group: two at a time).

use std::path::{Path, PathBuf};
use std::time::Duration;

use board::Board;
use board::ssh::{Login, login};
use card::Card;
use qemu_runner::{QemuBoard, QemuBoardConfig};

use board_kit::{append_to_cmdline, board, test_image as image};

const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn qemu_board_boots_to_sshd_and_the_test_channel_reports_aarch64() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let mut board = board(&image, "alpha", dir.path());
    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    assert_eq!(
        board.maintenance_exec("uname -m").unwrap().trim(),
        "aarch64"
    );
    // The card's serial reaches the guest as the block device's serial.
    let serial = board.card().unwrap().serial().to_string();
    assert_eq!(
        board
            .maintenance_exec("cat /sys/block/vda/serial")
            .unwrap()
            .trim(),
        serial
    );
    board.power_off().unwrap();
    assert!(!board.is_powered());
    assert!(
        board
            .console()
            .lines()
            .iter()
            .any(|l| l.text.contains("keybound-guest: halted")),
        "clean shutdown ran"
    );
}

#[test]
fn qemu_edited_cmdline_txt_reaches_the_guest_kernel() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let mut board = board(&image, "beta", dir.path());
    let marker = format!("keybound.edited={}", std::process::id());
    append_to_cmdline(&board, &marker);
    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    let cmdline = board.maintenance_exec("cat /proc/cmdline").unwrap();
    assert!(cmdline.contains(&marker), "guest saw {cmdline:?}");
    board.power_cut().unwrap();
}

#[test]
fn qemu_ssh_driver_logs_in_with_keyboard_interactive_and_records_prompts() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let mut board = board(&image, "gamma", dir.path());
    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    // The shipped stack asks for the password, then the enrolled TEST-ONLY token.
    let sockets = tempfile::Builder::new().prefix("tok-").tempdir().unwrap();
    let _token = board_kit::plug_test_token(&mut board, dir.path(), sockets.path());
    let endpoint = board.ssh().unwrap();
    // Generous: TCG on a loaded two-core machine makes sshd and pam_unix slow.
    let timeout = Duration::from_secs(150);
    let right = login(
        &endpoint,
        &Login {
            user: "tech",
            answers: &["keybound-test"],
            command: "id -un",
            timeout,
        },
        &dir.path().join("ssh-right"),
    )
    .unwrap();
    assert!(right.granted, "{right:?}");
    assert_eq!(right.stdout.trim(), "tech");
    assert_eq!(right.prompts, vec!["(tech@127.0.0.1) Password: "]);
    assert!(
        right.verbose.contains("keyboard-interactive"),
        "the -vvv exchange is recorded"
    );
    let wrong = login(
        &endpoint,
        &Login {
            user: "tech",
            answers: &["wrong"],
            command: "id -un",
            timeout,
        },
        &dir.path().join("ssh-wrong"),
    )
    .unwrap();
    assert!(!wrong.granted);
    assert_eq!(wrong.exit_code, Some(255));
    assert!(
        wrong.verbose.contains("Permission denied"),
        "{}",
        wrong.verbose
    );
    board.power_cut().unwrap();
}

/// Run by `qemu_no_qemu_outlives_a_killed_owner` in a child process: boots a board, prints the
/// QEMU pid, then waits to be killed.
#[test]
#[ignore = "helper process of qemu_no_qemu_outlives_a_killed_owner, not a test of its own"]
fn qemu_owner_helper_process() {
    let image = image();
    let dir = PathBuf::from(std::env::var_os("KEYBOUND_OWNER_HELPER").unwrap());
    let mut board = board(&image, "owner", &dir);
    board.power_on().unwrap();
    let pid = board.qemu_pid().unwrap().to_string();
    std::fs::write(dir.join("qemu.pid.tmp"), pid).unwrap();
    std::fs::rename(dir.join("qemu.pid.tmp"), dir.join("qemu.pid")).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn qemu_no_qemu_outlives_a_killed_owner() {
    let _ = image();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "qemu_owner_helper_process",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env("KEYBOUND_OWNER_HELPER", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("qemu.pid");
    let pid: i32 = (0..1200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_to_string(&pid_file).ok()
        })
        .expect("the helper reported a QEMU pid within 60 s")
        .parse()
        .unwrap();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU is running"
    );
    child.kill().unwrap(); // SIGKILL: no destructor runs in the owner
    child.wait().unwrap();
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "QEMU pid {pid} outlived its killed owner");
}

#[test]
fn qemu_dying_early_reports_its_stderr_and_the_console() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let mut config = QemuBoardConfig::new(
        "broken",
        dir.path().join("broken"),
        image.manifest.host_key.clone(),
    );
    config.cpu = "no-such-cpu".into();
    let mut board = QemuBoard::new(config).unwrap();
    board
        .insert_card(
            Card::overlay(&image.card, "raw", dir.path().join("broken-card.qcow2")).unwrap(),
        )
        .unwrap();
    let err = board.power_on().unwrap_err().to_string();
    assert!(
        err.contains("QEMU stderr") && err.contains("no-such-cpu"),
        "{err}"
    );
    assert!(err.contains("last console lines"), "{err}");
    assert!(!board.is_powered());
}

/// Types shell arithmetic on the console; a shell would print 42Z.
fn assert_no_shell_on_console(board: &QemuBoard) {
    let mark = board.console().mark();
    board.console().send("echo $((6*7))Z\n").unwrap();
    match board
        .console()
        .expect_after(mark, "42Z", Duration::from_secs(5))
    {
        Err(board::BoardError::ExpectTimeout { .. } | board::BoardError::ConsoleClosed { .. }) => {}
        other => panic!("a shell answered on the console: {other:?}"),
    }
}

#[test]
fn qemu_init_overrides_on_the_cmdline_are_ignored() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let mut board = board(&image, "delta", dir.path());
    append_to_cmdline(
        &board,
        "init=/bin/sh break single emergency systemd.unit=rescue.target",
    );
    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    assert!(
        board
            .maintenance_exec("cat /proc/cmdline")
            .unwrap()
            .contains("init=/bin/sh"),
        "the edit reached the kernel"
    );
    assert_eq!(
        board.maintenance_exec("cat /proc/1/comm").unwrap().trim(),
        "init",
        "PID 1 is the real init, not a shell"
    );
    assert_no_shell_on_console(&board);
    board.power_cut().unwrap();
}

#[test]
fn qemu_rdinit_shell_on_the_cmdline_gets_no_shell() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let mut board = board(&image, "epsilon", dir.path());
    append_to_cmdline(&board, "rdinit=/bin/sh");
    board.power_on().unwrap();
    // The initramfs holds no shell, so the kernel falls back to mounting root itself; the card's
    // drivers are modules it cannot load, and with `rootwait` it waits for a disk that never
    // comes: no shell, no key, no login.
    match board
        .console()
        .expect("sshd ready|keybound-init", Duration::from_secs(20))
    {
        Err(board::BoardError::ExpectTimeout { .. }) => {}
        other => panic!("the board went on booting: {other:?}"),
    }
    assert_no_shell_on_console(&board);
    board.power_cut().unwrap();
}
