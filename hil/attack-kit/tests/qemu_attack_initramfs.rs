//! Threat-matrix row "initramfs or kernel swapped on the boot partition | unsigned | risk: key
//! exfiltrated", end to end on QEMU: a card sealed to its board's Zymkey (root encrypted in
//! place and enrolled with sealed-root, as bins/init/tests/qemu_sealed_root.rs does) gets the
//! attacker's initramfs (`guest_image::attacker_initramfs`) as `initramfs8`; on power-on the
//! board's own Zymkey unlocks the blob for it, the loot lands on the boot partition, and on the
//! host the loot opens the root volume with `cryptsetup open --test-passphrase`. The risk is shown,
//! not asserted away: this test fails if the attack stops working.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use board::Board;
use card::Card;
use guest_image::{BuiltImage, Profile, Progress};
use qemu_runner::{QemuBoard, QemuBoardConfig, ZymkeyModule};
use sealed_root::{BoardProfile, RecoveryKdf, VolumeKey};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const LOOT_LINE: &str = "attacker: loot written";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn image() -> BuiltImage {
    guest_image::build_all(&repo(), Profile::Test, false, &Progress::hidden())
        .expect("building the guest image")
}

fn attacker_initramfs(image: &BuiltImage) -> PathBuf {
    guest_image::attacker_initramfs(&repo(), image, &Progress::hidden())
        .expect("building the attacker's initramfs")
}

/// A host-built harness artifact next to the test binary (builds its package if absent).
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

fn zymkey_module(dir: &Path) -> (ZymkeyModule, tempfile::TempDir) {
    let program = host_artifact("zymkey-emu", "zymkey-emu");
    let sockets = tempfile::Builder::new().prefix("zk-").tempdir().unwrap();
    let module =
        ZymkeyModule::start_program(&program, &dir.join("module"), sockets.path()).unwrap();
    (module, sockets)
}

/// The production client on the host, talking to `module` over its guest socket.
fn host_zymkey(module: &ZymkeyModule) -> zymkey::Zymkey {
    static LIB: OnceLock<zymkey::Library> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        zymkey::Library::load_from(host_artifact("zk-app-utils", "libzk_app_utils.so")).unwrap()
    });
    // SAFETY: set only here, right before zkOpen; nextest runs each test in its own process.
    unsafe { std::env::set_var("KEYBOUND_ZK_SOCKET", module.guest_socket()) };
    zymkey::Zymkey::open(lib).unwrap()
}

fn board(image: &BuiltImage, dir: &Path, module: &ZymkeyModule) -> QemuBoard {
    let mut config = QemuBoardConfig::new(
        "victim",
        dir.join("victim"),
        image.manifest.host_key.clone(),
    );
    config.maintenance_key = Some(guest_image::maintenance_key(&repo()));
    config.zymkey_socket = Some(module.guest_socket().to_path_buf());
    let mut board = QemuBoard::new(config).unwrap();
    board
        .insert_card(Card::overlay(&image.card, "raw", dir.join("victim-card.qcow2")).unwrap())
        .unwrap();
    module
        .attach(&board.config().board_serial, board.card().unwrap().serial())
        .unwrap();
    board
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seals the card in `board`'s slot to `module` as provisioning does: root encrypted in place
/// (AES-XTS, 32 MiB header room), enrolled (Zymkey slot + recovery slot to a throwaway vendor
/// key), the temporary provisioning keyslot removed. Returns the sealed root partition image.
fn seal_card(board: &QemuBoard, module: &ZymkeyModule, dir: &Path) -> PathBuf {
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
    let pass_file = dir.join("temp-pass");
    std::fs::write(&vk_file, vk.expose_secret()).unwrap();
    std::fs::write(&pass_file, b"temporary-provisioning-passphrase").unwrap();
    run(Command::new("cryptsetup")
        .args(["reencrypt", "--encrypt", "--type", "luks2", "--batch-mode"])
        .args(["--cipher", "aes-xts-plain64", "--key-size", "512"])
        .args(["--reduce-device-size", "32M", "--resilience", "checksum"])
        .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
        .arg("--volume-key-file")
        .arg(&vk_file)
        .arg("--key-file")
        .arg(&pass_file)
        .arg(&root));
    std::fs::remove_file(&vk_file).unwrap();
    let vendor = age::x25519::Identity::generate().to_public();
    let zk = host_zymkey(module);
    sealed_root::enroll(&root, &vk, &zk, &vendor, RecoveryKdf::ReducedForTests).unwrap();
    run(Command::new("cryptsetup")
        .args(["luksKillSlot", "--batch-mode"])
        .arg(&root)
        .arg("0"));
    card.write_range(layout.root, &root).unwrap();
    root
}

/// Whether `cryptsetup open --test-passphrase` accepts `key` (as a key file) on `volume`.
fn opens(volume: &Path, key: &[u8], dir: &Path) -> bool {
    let key_file = dir.join("candidate");
    std::fs::write(&key_file, key).unwrap();
    let status = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&key_file)
        .arg(volume)
        .status()
        .expect("running cryptsetup");
    std::fs::remove_file(&key_file).unwrap();
    status.success()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The entries (path, mode, content) of a gzip'd newc cpio.
fn cpio_entries(path: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "{path:?} is not gzip");
    let mut data = std::io::Cursor::new(out.stdout);
    let mut entries = Vec::new();
    loop {
        let mut reader = cpio::newc::Reader::new(data).unwrap();
        if reader.entry().is_trailer() {
            break;
        }
        let name = reader.entry().name().to_string();
        let mode = reader.entry().mode();
        let mut content = Vec::new();
        reader.read_to_end(&mut content).unwrap();
        entries.push((name, mode, content));
        data = reader.finish().unwrap();
    }
    entries
}

#[test]
fn qemu_attacker_initramfs_holds_busybox_the_tool_its_libraries_and_modules() {
    let image = image();
    let path = attacker_initramfs(&image);
    let entries = cpio_entries(&path);
    let get = |name: &str| entries.iter().find(|(n, _, _)| n == name);
    for must in [
        "init",
        "bin/busybox",
        "usr/bin/keybound-attack-unseal",
        "usr/lib/libzk_app_utils.so",
        "lib/ld-linux-aarch64.so.1",
        "lib/aarch64-linux-gnu/libc.so.6",
        "lib/aarch64-linux-gnu/libgcc_s.so.1",
        "lib/modules/load.list",
        "dev/console",
    ] {
        assert!(get(must).is_some(), "{must} missing from {path:?}");
    }
    for exe in ["init", "bin/busybox", "usr/bin/keybound-attack-unseal"] {
        assert_eq!(
            get(exe).unwrap().1 & 0o111,
            0o111,
            "{exe} is not executable"
        );
    }
    for elf in [
        "bin/busybox",
        "usr/bin/keybound-attack-unseal",
        "usr/lib/libzk_app_utils.so",
    ] {
        let bytes = &get(elf).unwrap().2;
        assert!(
            bytes.len() > 20
                && bytes[..4] == *b"\x7fELF"
                && u16::from_le_bytes([bytes[18], bytes[19]]) == 183,
            "{elf} is not an aarch64 ELF file"
        );
    }
    let load_list = String::from_utf8(get("lib/modules/load.list").unwrap().2.clone()).unwrap();
    for module in ["virtio_console.ko", "vfat.ko", "nls_cp437.ko"] {
        assert!(
            load_list.lines().any(|l| l == module),
            "{module} not loaded: {load_list}"
        );
    }
    for line in load_list.lines() {
        assert!(
            get(&format!("lib/modules/{line}")).is_some(),
            "{line} listed but missing"
        );
    }
    assert!(
        get("keybound-init").is_none()
            && get("init").unwrap().2.starts_with(b"#!/bin/busybox sh\n")
    );
    // The script as packed parses.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &get("init").unwrap().2).unwrap();
    run(Command::new("sh").arg("-n").arg(script.path()));
    // Content-addressed: asking again gives the same cache entry.
    assert_eq!(attacker_initramfs(&image), path);
    // Never on a card: the image's own initramfs8 is keybound-init's.
    let scratch = tempfile::tempdir().unwrap();
    let card = Card::overlay(&image.card, "raw", scratch.path().join("c.qcow2")).unwrap();
    let own = card.read_boot_file("initramfs8").unwrap();
    assert_ne!(own, std::fs::read(&path).unwrap());
    eprintln!(
        "figures: attacker initramfs {} bytes gzip'd, {} entries",
        std::fs::metadata(&path).unwrap().len(),
        entries.len()
    );
}

#[test]
fn qemu_swapped_initramfs_exfiltrates_the_sealed_key_to_the_boot_partition() {
    let image = image();
    let initramfs = attacker_initramfs(&image);
    let dir = tempfile::tempdir().unwrap();
    let (module, _sockets) = zymkey_module(dir.path());
    let mut board = board(&image, dir.path(), &module);
    let root = seal_card(&board, &module, dir.path());

    // The attacker, with the card in a reader: swap initramfs8 on the (unsigned) boot partition.
    let card = board.card().unwrap();
    assert!(
        !card
            .list_boot_files()
            .unwrap()
            .iter()
            .any(|f| f == "loot.txt"),
        "loot before the attack"
    );
    card.write_boot_file("initramfs8", &std::fs::read(&initramfs).unwrap())
        .unwrap();

    let start = Instant::now();
    board.power_on().unwrap();
    board
        .console()
        .expect(LOOT_LINE, BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}: {}", board.console().tail(40)));
    let looted_after = start.elapsed();
    for _ in 0..300 {
        if !board.is_powered() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !board.is_powered(),
        "the attacker's init did not power off: {}",
        board.console().tail(20)
    );
    let console: Vec<String> = board
        .console()
        .lines()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert!(
        !console.iter().any(|l| l.contains("keybound-init")),
        "keybound-init ran: the swap did not take"
    );

    // On the host: the loot on the boot partition opens the root volume.
    let card = board.card().unwrap();
    let loot = String::from_utf8(card.read_boot_file("loot.txt").unwrap()).unwrap();
    let key =
        decode_hex(&loot).unwrap_or_else(|| panic!("loot.txt is not hex ({} bytes)", loot.len()));
    assert_eq!(key.len(), 32, "the sealed secret is 32 bytes");
    let layout = card.layout().unwrap();
    let header = dir.path().join("root-header.img");
    let range = layout.root.luks2_header();
    card.read_range(range, &header).unwrap();
    assert!(
        opens(&header, &key, dir.path()),
        "cryptsetup open --test-passphrase refused the exfiltrated key"
    );
    // Not an accident of this card: the same key opens the sealed image as sealed on the host,
    // and a wrong key does not.
    assert!(opens(&root, &key, dir.path()));
    let mut wrong = key.clone();
    wrong[0] ^= 1;
    assert!(!opens(&header, &wrong, dir.path()));
    let at = |p: &str| {
        board
            .console()
            .lines()
            .into_iter()
            .find(|l| l.text.contains(p))
            .map(|l| l.at)
    };
    eprintln!(
        "figures: loot written {looted_after:?} after power-on (console: initramfs start {:?}, loot line {:?})",
        at("attacker: initramfs start"),
        at(LOOT_LINE)
    );
}
