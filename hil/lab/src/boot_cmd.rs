//! `keybound-lab boot` (boot one board and show it is alive) and `keybound-lab bench boot`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use board::Board;
use card::Card;
use guest_image::{BuiltImage, Profile};
use qemu_runner::{QemuBoard, QemuBoardConfig};

use crate::image_cmd::build_image;

const READY: &str = "keybound-guest: sshd ready";
const FIRST_INIT_LINE: &str = "keybound-init: start";
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A run directory under `target/keybound-runs/`.
fn run_dir(repo: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let dir = repo
        .join("target/keybound-runs")
        .join(format!("{what}-{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn new_board(repo: &Path, image: &BuiltImage, name: &str, dir: &Path) -> anyhow::Result<QemuBoard> {
    let mut config = QemuBoardConfig::new(name, dir.join(name), image.manifest.host_key.clone());
    config.maintenance_key = Some(guest_image::maintenance_key(repo));
    let mut board = QemuBoard::new(config)?;
    board.insert_card(Card::overlay(
        &image.card,
        "raw",
        dir.join(format!("{name}-card.qcow2")),
    )?)?;
    Ok(board)
}

/// Builds the image, boots a board, shows what the guest reports, powers it off.
pub(crate) fn boot(repo: &Path) -> anyhow::Result<()> {
    let image = build_image(repo, Profile::Test, false)?;
    let dir = run_dir(repo, "boot")?;
    let mut board = new_board(repo, &image, "board", &dir)?;
    let started = Instant::now();
    board.power_on()?;
    board.console().expect(READY, BOOT_TIMEOUT)?;
    let booted = started.elapsed();
    let report = board.maintenance_exec("uname -srm; keybound status")?;
    println!(
        "board booted to sshd in {:.2} s; the guest reports:\n{}",
        booted.as_secs_f64(),
        report.trim_end()
    );
    if let Some(ssh) = board.ssh() {
        println!("production sshd forwarded to 127.0.0.1:{}", ssh.port);
    }
    board.power_off()?;
    println!(
        "console transcript: {}",
        dir.join("board/console.log").display()
    );
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Boots `runs` fresh boards one after another and prints the medians of QEMU start → first
/// init line and → sshd ready.
pub(crate) fn bench_boot(repo: &Path, runs: usize) -> anyhow::Result<()> {
    let image = build_image(repo, Profile::Test, false)?;
    let dir = run_dir(repo, "bench-boot")?;
    let (mut firmware, mut first_line, mut ready, mut from_qemu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let mut board = new_board(repo, &image, &format!("bench{i}"), &dir)?;
        let t0 = Instant::now();
        board.power_on()?;
        let spawned = t0.elapsed().as_secs_f64();
        board.console().expect(FIRST_INIT_LINE, BOOT_TIMEOUT)?;
        let first = t0.elapsed().as_secs_f64();
        board.console().expect(READY, BOOT_TIMEOUT)?;
        let up = t0.elapsed().as_secs_f64();
        board.power_cut()?;
        eprintln!(
            "run {}: firmware+spawn {spawned:.2} s, first init line {first:.2} s, sshd ready {up:.2} s",
            i + 1
        );
        firmware.push(spawned);
        from_qemu.push(first - spawned);
        first_line.push(first);
        ready.push(up);
    }
    println!(
        "boot benchmark, median of {runs} (power on = harness reads the card as the Pi firmware, then starts QEMU):"
    );
    println!("  power on → QEMU running:  {:.2} s", median(firmware));
    println!("  power on → first init line: {:.2} s", median(first_line));
    println!("  QEMU start → first init line: {:.2} s", median(from_qemu));
    println!("  power on → sshd ready:     {:.2} s", median(ready));
    Ok(())
}
