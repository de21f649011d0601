//! The rig's drivers and strategy without hardware: a fake GPIO controller, a pseudo-terminal
//! standing in for the board's UART (the serial driver opens it by path, as it opens a USB
//! adapter), a card image file standing in for the SD mux's block device, and a shell command
//! standing in for the mux's control tool. Nothing here proves anything about real relays,
//! muxes or Pis (see README.md).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rig::gpio::{FakeGpio, Level, SharedGpio, shared};
use rig::rigfile::RigFile;
use rig::{RigBoard, RigBoot, RigError};

/// A pseudo-terminal: the test holds the master (the board's side of the wire); the slave's
/// path is what the rig file names as the console device.
struct Pty {
    master: File,
    slave_path: PathBuf,
    _slave: OwnedFd,
}

fn pty() -> Pty {
    let pair = nix::pty::openpty(None, None).unwrap();
    let slave_path = nix::unistd::ttyname(&pair.slave).unwrap();
    Pty {
        master: File::from(pair.master),
        slave_path,
        _slave: pair.slave,
    }
}

const RELAY_LINE: u32 = 17;

fn rig_text(console: &Path, mux_log: &Path, card: &Path) -> String {
    format!(
        r#"
gpio = "fake"

[boards.pi]
model = "pi4"
power = {{ relay = {{ chip = "gpiochip0", line = {RELAY_LINE}, active = "low" }}, off-time = "10ms" }}
console = {{ device = "{}" }}
sd-mux = {{ device = "{}", switch = {{ command = ["sh", "-c", "echo {{}} >> {}"] }}, settle = "1s" }}
zymkey = {{ binding = "developer" }}

[boards.pi.token-ports.key]
switch = {{ gpio = {{ chip = "gpiochip0", line = 27, active = "high" }} }}
enrolled = true
"#,
        console.display(),
        card.display(),
        mux_log.display()
    )
}

/// A card image like the test image's: MBR, a FAT32 boot partition with cmdline.txt.
fn card_image(path: &Path) {
    let layout = card::CardLayout::plan(0x1234_5678, 64, 1 << 20);
    let mut file = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    file.set_len(layout.card_size()).unwrap();
    layout.write_mbr(&mut file).unwrap();
    let slice = fscommon::StreamSlice::new(
        file,
        layout.boot.offset,
        layout.boot.offset + layout.boot.size,
    )
    .unwrap();
    card::boot_fs::format(slice, &[("cmdline.txt", b"console=serial0,115200 quiet\n")]).unwrap();
}

struct Bench {
    pty: Pty,
    board: RigBoard,
    gpio_state: Arc<Mutex<rig::gpio::FakeState>>,
    events: Arc<Mutex<Vec<String>>>,
    mux_log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A board whose simulated Pi prints `boot_lines` on its UART when the relay powers it.
fn bench(boot_lines: &'static str) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty();
    let mux_log = dir.path().join("mux.log");
    let card = dir.path().join("card.img");
    card_image(&card);
    let text = rig_text(&pty.slave_path, &mux_log, &card);
    let rig = RigFile::parse(Path::new("rigs/test.toml"), &text).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut uart = pty.master.try_clone().unwrap();
    let log = Arc::clone(&events);
    let fake = FakeGpio::new().with_watcher(Box::new(move |_, line, level| {
        if line != RELAY_LINE {
            return;
        }
        // Active-low relay: low = powered.
        let on = level == Level::Low;
        log.lock()
            .unwrap()
            .push(if on { "relay on" } else { "relay off" }.into());
        if on {
            let _ = uart.write_all(boot_lines.as_bytes());
        }
    }));
    let gpio_state = fake.state();
    let gpio: SharedGpio = shared(fake);
    let board = RigBoard::new(
        "pi",
        &rig.boards["pi"],
        &gpio,
        dir.path(),
        &dir.path().join("work"),
    )
    .unwrap();
    Bench {
        pty,
        board,
        gpio_state,
        events,
        mux_log,
        _dir: dir,
    }
}

const UP: &str = "U-Boot\r\n[    0.000000] Booting Linux\r\nkeybound-init: unlocked\r\nkeybound-guest: sshd ready\r\n";

#[test]
fn a_board_starts_cut_and_boots_on_the_relay_to_the_shared_milestone() {
    let mut b = bench(UP);
    // Known start: relay off (active-low: high), token port off.
    let levels = b.gpio_state.lock().unwrap().levels.clone();
    assert_eq!(levels[&("gpiochip0".into(), RELAY_LINE)], Level::High);
    assert_eq!(levels[&("gpiochip0".into(), 27)], Level::Low);
    assert!(!b.board.is_powered());
    let mark = b.board.console().mark();
    b.board.power_on().unwrap();
    assert!(b.board.is_powered());
    let end = b.board.wait_boot(mark, Duration::from_secs(10)).unwrap();
    assert_eq!(end, RigBoot::Up);
    let transcript = std::fs::read_to_string(b.board.transcript()).unwrap();
    assert!(
        transcript.contains("] keybound-guest: sshd ready"),
        "{transcript}"
    );
    drop(b.board);
    // Teardown cut the relay.
    assert_eq!(b.events.lock().unwrap().last().unwrap(), "relay off");
}

#[test]
fn a_sealed_boot_gives_the_whole_reason_and_a_halt_counts_as_off() {
    let mut b = bench("keybound-init: sealed: volume check failed\r\nreboot: Power down\r\n");
    let mark = b.board.console().mark();
    b.board.power_on().unwrap();
    let end = b.board.wait_boot(mark, Duration::from_secs(10)).unwrap();
    assert_eq!(
        end,
        RigBoot::Sealed {
            reason: "volume check failed".into()
        }
    );
    b.board
        .console()
        .expect_after(mark, "Power down", Duration::from_secs(5))
        .unwrap();
    assert!(!b.board.is_powered(), "a halted board counts as off");
}

#[test]
fn console_lines_reach_the_console_and_send_reaches_the_uart() {
    let mut b = bench("");
    b.board.power_on().unwrap();
    b.pty
        .master
        .write_all(b"Debian GNU/Linux 12 pi ttyAMA0\r\n\r\npi login: ")
        .unwrap();
    b.board
        .console()
        .expect("login: $", Duration::from_secs(5))
        .unwrap();
    b.board.console().send("tech\n").unwrap();
    let mut typed = [0u8; 5];
    b.pty.master.read_exact(&mut typed).unwrap();
    assert_eq!(&typed, b"tech\n");
}

#[test]
fn clean_off_asks_for_a_halt_and_waits_for_it_before_the_relay_goes_off() {
    let mut b = bench(UP);
    b.board.power_on().unwrap();
    let mut uart = b.pty.master.try_clone().unwrap();
    let events = Arc::clone(&b.events);
    b.board
        .power_off(&mut || {
            events.lock().unwrap().push("halt requested".into());
            std::thread::sleep(Duration::from_millis(200));
            events.lock().unwrap().push("halted".into());
            uart.write_all(b"reboot: Power down\r\n").unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(
        *b.events.lock().unwrap(),
        // Off at the start (known state), then on, the halt, off.
        [
            "relay off",
            "relay on",
            "halt requested",
            "halted",
            "relay off"
        ]
    );
    assert!(!b.board.is_powered());
}

#[test]
fn a_cut_asks_nothing_and_switches_the_relay_off_at_once() {
    let mut b = bench(UP);
    b.board.power_on().unwrap();
    b.board.power_cut().unwrap();
    assert_eq!(
        *b.events.lock().unwrap(),
        ["relay off", "relay on", "relay off"]
    );
    assert!(!b.board.is_powered());
    let transcript = std::fs::read_to_string(b.board.transcript()).unwrap();
    assert!(!transcript.contains("clean power off"), "{transcript}");
}

#[test]
fn the_sd_mux_refuses_a_running_board_and_edits_boot_files_of_a_stopped_one() {
    let mut b = bench(UP);
    b.board.power_on().unwrap();
    match b.board.with_card(|card| card.read_boot_file("cmdline.txt")) {
        Err(RigError::State { reason, .. }) => assert!(reason.contains("running"), "{reason}"),
        other => panic!("the mux took the card from a running board: {other:?}"),
    }
    // Only the switch to the board side at start-up ran.
    assert_eq!(std::fs::read_to_string(&b.mux_log).unwrap(), "dut\n");
    b.board.power_cut().unwrap();
    b.board
        .with_card(|card| {
            let old = card.read_boot_file("cmdline.txt")?;
            let mut new = String::from_utf8_lossy(&old).trim_end().to_string();
            new.push_str(" init=/bin/sh\n");
            card.write_boot_file("cmdline.txt", new.as_bytes())
        })
        .unwrap();
    let read = b
        .board
        .with_card(|card| card.read_boot_file("cmdline.txt"))
        .unwrap();
    assert_eq!(read, b"console=serial0,115200 quiet init=/bin/sh\n");
    assert_eq!(
        std::fs::read_to_string(&b.mux_log).unwrap(),
        "dut\nhost\ndut\nhost\ndut\n"
    );
    // A failing edit still gives the card back.
    assert!(
        b.board
            .with_card(|card| card.read_boot_file("no-such.txt"))
            .is_err()
    );
    assert!(
        std::fs::read_to_string(&b.mux_log)
            .unwrap()
            .ends_with("host\ndut\n")
    );
}

#[test]
fn a_token_port_is_powered_by_its_line() {
    let mut b = bench(UP);
    b.board.set_token_port("key", true).unwrap();
    let level = b.gpio_state.lock().unwrap().levels[&("gpiochip0".into(), 27)];
    assert_eq!(level, Level::High);
    b.board.set_token_port("key", false).unwrap();
    assert!(b.board.set_token_port("other", true).is_err());
}

#[test]
fn the_kill_switch_cuts_power_from_another_thread() {
    let mut b = bench(UP);
    b.board.power_on().unwrap();
    let kill = b.board.kill_switch();
    std::thread::spawn(move || kill()).join().unwrap();
    assert!(!b.board.is_powered());
}
