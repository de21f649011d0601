//! Bench (issue 4, item 7), ignored by default: keybound-init start → root mounted on a sealed
//! card, next to `cryptsetup open --test-passphrase --key-file` on the same keyslot (same
//! parameters: PBKDF2-SHA512, 1000 iterations, AES-XTS-512) run in the booted guest. Prints
//! `figures:` lines; asserts only that each step worked.
//!
//! Run: `cargo nextest run -p keybound-admin --test qemu_bench_unlock --run-ignored only
//! --no-capture` (set `KEYBOUND_BENCH_BOOTS` for more than 3 boots).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use board::{Board, Mark};
use card::Card;
use guest_image::{BuiltImage, Profile, Progress};
use qemu_runner::{QemuBoard, QemuBoardConfig, ZymkeyModule};
use sealed_root::{BoardProfile, RecoveryKdf, VolumeKey};

const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
const READY: &str = "keybound-guest: sshd ready";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn host_artifact(package: &str, file: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let find = || {
        exe.ancestors()
            .skip(1)
            .take(2)
            .map(|d| d.join(file))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package])
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p {package}");
    find().unwrap_or_else(|| panic!("{file} after building {package}"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The board's card root encrypted in place on the host (as keybound-init's provisioning does
/// it) and enrolled against `module`; the temporary keyslot removed.
fn seal_card(board: &QemuBoard, zk: &zymkey::Zymkey, dir: &Path) -> PathBuf {
    let card = board.card().unwrap();
    let layout = card.layout().unwrap();
    let root = dir.join("root.img");
    card.read_range(layout.root, &root).unwrap();
    let size = std::fs::metadata(&root).unwrap().len();
    run(Command::new("e2fsck").arg("-fy").arg(&root));
    run(Command::new("resize2fs")
        .arg(&root)
        .arg(format!("{}K", (size - (32 << 20)) / 1024)));
    let vk = VolumeKey::generate(BoardProfile::AesXts.key_bytes()).unwrap();
    let vk_file = dir.join("vk.bin");
    let pass = dir.join("temp-pass");
    std::fs::write(&vk_file, vk.expose_secret()).unwrap();
    std::fs::write(&pass, b"temporary-bench-passphrase").unwrap();
    run(Command::new("cryptsetup")
        .args(["reencrypt", "--encrypt", "--type", "luks2", "--batch-mode"])
        .args(["--cipher", "aes-xts-plain64", "--key-size", "512"])
        .args(["--reduce-device-size", "32M", "--resilience", "checksum"])
        .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
        .arg("--volume-key-file")
        .arg(&vk_file)
        .arg("--key-file")
        .arg(&pass)
        .arg(&root));
    std::fs::remove_file(&vk_file).unwrap();
    let vendor = age::x25519::Identity::generate().to_public();
    sealed_root::enroll(&root, &vk, zk, &vendor, RecoveryKdf::ReducedForTests).unwrap();
    run(Command::new("cryptsetup")
        .args(["luksKillSlot", "--batch-mode"])
        .arg(&root)
        .arg("0"));
    card.write_range(layout.root, &root).unwrap();
    root
}

fn seconds(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64())
}

#[test]
#[ignore = "bench: prints figures; run with --run-ignored only"]
fn qemu_bench_unlock_init_vs_cryptsetup() {
    let image: BuiltImage =
        guest_image::build_all(&repo(), Profile::Test, false, &Progress::hidden()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let program = host_artifact("zymkey-emu", "zymkey-emu");
    let sockets = tempfile::Builder::new().prefix("zk-").tempdir().unwrap();
    let module =
        ZymkeyModule::start_program(&program, &dir.path().join("module"), sockets.path()).unwrap();
    let mut config = QemuBoardConfig::new(
        "bench",
        dir.path().join("bench"),
        image.manifest.host_key.clone(),
    );
    config.maintenance_key = Some(guest_image::maintenance_key(&repo()));
    config.zymkey_socket = Some(module.guest_socket().to_path_buf());
    let mut board = QemuBoard::new(config).unwrap();
    board
        .insert_card(Card::overlay(&image.card, "raw", dir.path().join("card.qcow2")).unwrap())
        .unwrap();
    module
        .attach(&board.config().board_serial, board.card().unwrap().serial())
        .unwrap();
    let lib =
        zymkey::Library::load_from(host_artifact("zk-app-utils", "libzk_app_utils.so")).unwrap();
    // SAFETY: set once, before this process's only zkOpen.
    unsafe { std::env::set_var("KEYBOUND_ZK_SOCKET", module.guest_socket()) };
    let zk = zymkey::Zymkey::open(&lib).unwrap();
    // The sealed header stays as written (the card is busy while the board runs).
    let root = seal_card(&board, &zk, dir.path());
    // Unsealed now: while the guest runs, the module serves the guest's connection only.
    let unsealed = sealed_root::unseal(&root, &zk).unwrap();
    drop(zk);

    let boots: usize = std::env::var("KEYBOUND_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut init_to_mounted = Vec::new();
    for i in 0..boots {
        let before = board.console().lines().len();
        let mark: Mark = board.console().mark();
        board.power_on().unwrap();
        board
            .console()
            .expect_after(mark, READY, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:?}\n{}", board.console().tail(30)));
        let lines = board.console().lines();
        let this_boot = &lines[before..];
        // Console times count from the board's creation: relative to this boot's first line
        // (the harness's power-on note).
        let t0 = this_boot.first().map(|l| l.at).unwrap_or_default();
        let at = |p: &str| {
            this_boot
                .iter()
                .find(|l| l.text.contains(p))
                .map(|l| l.at.saturating_sub(t0))
        };
        let (start, unlock, mounted) = (
            at("keybound-init: start"),
            at("keybound-init: unlocking"),
            at("keybound-init: root mounted"),
        );
        let span = mounted.zip(start).map(|(m, s)| m.saturating_sub(s));
        eprintln!(
            "figures: boot {i}: first console line of the boot → keybound-init start {:.2} s, unlock start {:.2} s, \
             root mounted {:.2} s; keybound-init start → root mounted {:.2} s",
            seconds(start),
            seconds(unlock),
            seconds(mounted),
            seconds(span)
        );
        init_to_mounted.extend(span);
        if i + 1 < boots {
            board.power_cut().unwrap();
        }
    }

    // The same keyslot through the cryptsetup CLI, in the guest: the sealed secret (bench only:
    // written to the guest's tmpfs, never on the card) opens the sealed keyslot.
    let root_dev = board
        .maintenance_exec("keybound status --json")
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            v["volume"]["device"].as_str().unwrap().to_string()
        })
        .unwrap();
    let octal: String = unsealed
        .passphrase()
        .iter()
        .map(|b| format!("\\{b:03o}"))
        .collect();
    let n = 10;
    let script = format!(
        "umask 077; printf '{octal}' > /run/bench-key; \
         read -r t0 _ < /proc/uptime; i=0; \
         while [ $i -lt {n} ]; do \
           cryptsetup open --test-passphrase --key-slot {ks} --key-file /run/bench-key {root_dev} || exit 1; \
           i=$((i+1)); done; \
         read -r t1 _ < /proc/uptime; rm -f /run/bench-key; echo \"$t0 $t1\"",
        ks = unsealed.keyslot()
    );
    let out = board.maintenance_exec(&script).unwrap();
    let t: Vec<f64> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(t.len(), 2, "{out}");
    let per_open = (t[1] - t[0]) / f64::from(n);
    let mean = init_to_mounted
        .iter()
        .map(Duration::as_secs_f64)
        .sum::<f64>()
        / init_to_mounted.len().max(1) as f64;
    eprintln!(
        "figures: keybound-init start → root mounted, mean of {} boots: {mean:.2} s \
         (modules, Zymkey unseal, activation, volume check, mount); cryptsetup open \
         --test-passphrase --key-file on the same keyslot (PBKDF2-SHA512 1000 it.), mean of {n} \
         in the guest: {per_open:.3} s (keyslot unlock only: process start, header load, KDF, \
         digest check; no dm table, no mount)",
        init_to_mounted.len()
    );
    board.power_cut().unwrap();
}
