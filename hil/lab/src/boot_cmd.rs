//! `keybound-lab boot` (boot one board and show it is alive) and `keybound-lab bench boot`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use board::Board;
use guest_image::{BuiltImage, Profile};
use qemu_runner::QemuBoard;

use crate::image_cmd::build_image;

use board_kit::READY;
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
    Ok(board_kit::new_board(repo, image, name, dir, |_| {})?)
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

/// Builds the host emulator daemons the boards start, in the profile of this binary so they land
/// next to it (a no-op when they are up to date; never a stale daemon).
pub(crate) fn build_host_tools(repo: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = std::env::current_exe()?
        .components()
        .any(|c| c.as_os_str() == "release");
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(repo).args([
        "build",
        "--quiet",
        "--package",
        "zymkey-emu",
        "--package",
        "virtual-fido",
        "--package",
        "keybound-vendor",
    ]);
    if release {
        cmd.arg("--release");
    }
    anyhow::ensure!(
        cmd.status()?.success(),
        "building the harness host tools (zymkey-emu, virtual-fido, keybound-vendor) failed"
    );
    Ok(())
}

/// Registers once, then times `runs` assertions by libfido2's `fido2-assert` in the guest with
/// the virtual token on the board's USB bus (usb-redir), process start-up included.
pub(crate) fn bench_token(repo: &Path, runs: usize) -> anyhow::Result<()> {
    build_host_tools(repo)?;
    let image = build_image(repo, Profile::Test, false)?;
    let dir = run_dir(repo, "bench-token")?;
    let sockets = tempfile::Builder::new().prefix("kb-tok-").tempdir()?;
    let token = qemu_runner::VirtualToken::start(&dir.join("token"), sockets.path(), "accept")?;
    let mut board = new_board(repo, &image, "board", &dir)?;
    board.power_on()?;
    board.console().expect(READY, BOOT_TIMEOUT)?;
    let plugged = Instant::now();
    board.plug_usb_redir("token0", token.usbredir_socket())?;
    while !board
        .maintenance_exec("fido2-token -L")?
        .contains("/dev/hidraw")
    {
        anyhow::ensure!(
            plugged.elapsed() < Duration::from_secs(30),
            "the token did not appear in the guest"
        );
    }
    let appeared = plugged.elapsed();
    board.maintenance_exec(BENCH_SETUP)?;
    let t0 = Instant::now();
    board.maintenance_exec("true")?;
    let empty = t0.elapsed();
    let t1 = Instant::now();
    let out = board.maintenance_exec(&format!(". /tmp/bench.env; for i in $(seq {runs}); do fido2-assert -G -i /tmp/a.in \"$dev\" es256 > /dev/null || exit 1; done; echo done"))?;
    let total = t1.elapsed();
    anyhow::ensure!(out.contains("done"), "assertions failed in the guest");
    let per = (total.saturating_sub(empty)).as_secs_f64() * 1000.0 / runs as f64;
    println!("token bench ({runs} assertions in the guest through usb-redir):");
    println!(
        "  plug → listed by fido2-token -L: {:.2} s",
        appeared.as_secs_f64()
    );
    println!("  fido2-assert -G round trip (process start included): {per:.1} ms");
    board.power_cut()?;
    Ok(())
}

const BENCH_SETUP: &str = r#"set -e
dev=$(fido2-token -L | head -n1 | cut -d: -f1)
echo "dev=$dev" > /tmp/bench.env
rand() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
printf '%s\n%s\n%s\n%s\n' "$(rand 32)" keybound.bench tech "$(rand 16)" > /tmp/c.in
fido2-cred -M -i /tmp/c.in -o /tmp/c.out "$dev" es256
fido2-cred -V -i /tmp/c.out -o /tmp/c.ver es256
printf '%s\n%s\n%s\n' "$(rand 32)" keybound.bench "$(sed -n 1p /tmp/c.ver)" > /tmp/a.in
"#;
