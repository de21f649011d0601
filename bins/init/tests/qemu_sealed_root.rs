//! keybound-init on a sealed LUKS2 root in a QEMU guest: the card's root is encrypted in place on
//! the host (`cryptsetup reencrypt --encrypt --reduce-device-size`, offline on the partition
//! image) and enrolled with sealed-root against the board's emulated Zymkey, then booted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use board::{Board, Mark};
use card::Card;
use guest_image::{BuiltImage, Profile, Progress};
use qemu_runner::{QemuBoard, QemuBoardConfig, ZymkeyModule};
use sealed_root::{BoardProfile, RecoveryKdf, VolumeKey};
use serde_json::json;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const MARKER: &str = "written-before-sealing-4711";

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

fn zymkey_module(dir: &Path, name: &str) -> (ZymkeyModule, tempfile::TempDir) {
    static EMU: OnceLock<PathBuf> = OnceLock::new();
    let program = EMU.get_or_init(|| host_artifact("zymkey-emu", "zymkey-emu"));
    let sockets = tempfile::Builder::new().prefix("zk-").tempdir().unwrap();
    let module = ZymkeyModule::start_program(program, &dir.join(name), sockets.path()).unwrap();
    (module, sockets)
}

/// The production client on the host, talking to `module` over its guest socket.
fn host_zymkey(module: &ZymkeyModule) -> zymkey::Zymkey {
    static LIB: OnceLock<zymkey::Library> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        zymkey::Library::load_from(host_artifact("zk-app-utils", "libzk_app_utils.so")).unwrap()
    });
    // SAFETY: the tests of this binary set the variable only here, right before zkOpen, and
    // run one at a time per process (nextest runs each test in its own process).
    unsafe { std::env::set_var("KEYBOUND_ZK_SOCKET", module.guest_socket()) };
    zymkey::Zymkey::open(lib).unwrap()
}

fn board(image: &BuiltImage, name: &str, dir: &Path, module: &ZymkeyModule) -> QemuBoard {
    let card = Card::overlay(&image.card, "raw", dir.join(format!("{name}-card.qcow2"))).unwrap();
    board_with_card(image, name, dir, module, card)
}

/// A board of the test image (its host key, the maintenance channel) wired to `module`, with
/// `card` in the slot.
fn board_with_card(
    image: &BuiltImage,
    name: &str,
    dir: &Path,
    module: &ZymkeyModule,
    card: Card,
) -> QemuBoard {
    let mut config = QemuBoardConfig::new(name, dir.join(name), image.manifest.host_key.clone());
    config.maintenance_key = Some(guest_image::maintenance_key(&repo()));
    config.zymkey_socket = Some(module.guest_socket().to_path_buf());
    let mut board = QemuBoard::new(config).unwrap();
    board.insert_card(card).unwrap();
    board
}

/// Waits for the guest's console line matching `pattern` after `from`; on failure panics with
/// the console's last lines. The matched text and where it was.
fn expect_line(board: &QemuBoard, from: Mark, pattern: &str, timeout: Duration) -> (String, Mark) {
    board
        .console()
        .expect_guest_after(from, pattern, timeout)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", board.console().tail(30)))
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

/// Encrypts the ext4 image `root` in place (shrink, reencrypt with a 32 MiB header room) under a
/// fresh volume key, with a temporary passphrase keyslot that the caller removes after enrolling.
fn encrypt_in_place(root: &Path, dir: &Path) -> VolumeKey {
    let size = std::fs::metadata(root).unwrap().len();
    run(Command::new("e2fsck").arg("-fy").arg(root));
    run(Command::new("resize2fs")
        .arg(root)
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
        .arg(root));
    std::fs::remove_file(&vk_file).unwrap();
    vk
}

/// Seals the card in `board`'s slot to `module`: marker written, root encrypted in place,
/// enrolled (Zymkey slot + recovery slot to a vendor key), temporary slot removed.
fn seal_card(board: &QemuBoard, module: &ZymkeyModule, dir: &Path) -> PathBuf {
    let card = board.card().unwrap();
    let layout = card.layout().unwrap();
    let root = dir.join("root.img");
    card.read_range(layout.root, &root).unwrap();
    let marker = dir.join("marker");
    std::fs::write(&marker, MARKER).unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} /root/sealed-marker", marker.display()))
        .arg(&root));
    let vk = encrypt_in_place(&root, dir);
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

fn attach(module: &ZymkeyModule, board: &QemuBoard) {
    module
        .attach(&board.config().board_serial, board.card().unwrap().serial())
        .unwrap();
}

/// Types shell arithmetic on the console; a shell would print 42Z.
fn assert_no_shell_on_console(board: &QemuBoard) {
    let mark = board.console().mark();
    let _ = board.console().send("echo $((6*7))Z\n");
    match board
        .console()
        .expect_after(mark, "42Z", Duration::from_secs(5))
    {
        Err(board::BoardError::ExpectTimeout { .. } | board::BoardError::ConsoleClosed { .. }) => {}
        other => panic!("a shell answered on the console: {other:?}"),
    }
}

/// The console shows exactly this failure line, once.
fn assert_failure_line(board: &QemuBoard, want: &str) {
    let sealed_lines = || -> Vec<String> {
        board
            .console()
            .lines()
            .into_iter()
            .map(|l| l.text)
            .filter(|t| t.contains("keybound: sealed:"))
            .collect()
    };
    // The line is complete once its newline arrived.
    for _ in 0..50 {
        if !sealed_lines().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = sealed_lines();
    assert_eq!(lines.len(), 1, "{}", board.console().tail(30));
    assert_eq!(lines[0].trim(), want, "{}", board.console().tail(30));
}

fn wait_powered_off(board: &mut QemuBoard) {
    for _ in 0..200 {
        if !board.is_powered() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the board did not power off: {}", board.console().tail(20));
}

#[test]
fn qemu_sealed_root_unlocks_with_its_zymkey_and_keeps_the_data() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let mut board = board(&image, "sealed", dir.path(), &module);
    attach(&module, &board);
    seal_card(&board, &module, dir.path());

    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-init: unlocking the sealed root", BOOT_TIMEOUT)
        .unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    let mounts = board.maintenance_exec("cat /proc/mounts").unwrap();
    let root_line = mounts.lines().find(|l| l.split(' ').nth(1) == Some("/"));
    assert!(
        root_line.is_some_and(
            |l| l.starts_with("/dev/mapper/keybound-root ") || l.starts_with("/dev/dm-")
        ),
        "root is not the dm-crypt mapping: {mounts}"
    );
    let table = board
        .maintenance_exec("cat /sys/block/dm-0/dm/name /sys/block/dm-0/dm/uuid")
        .unwrap();
    assert!(
        table.contains("keybound-root") && table.contains("CRYPT-LUKS2"),
        "{table}"
    );
    let marker = board.maintenance_exec("cat /root/sealed-marker").unwrap();
    assert_eq!(marker.trim(), MARKER);
    // Figures for the notes (measured, not asserted): console time since power on.
    let lines = board.console().lines();
    let at = |p: &str| lines.iter().find(|l| l.text.contains(p)).map(|l| l.at);
    eprintln!(
        "figures: keybound-init start {:?}, unlock start {:?}, root mounted {:?}",
        at("keybound-init: start"),
        at("keybound-init: unlocking"),
        at("keybound-init: root mounted")
    );
    board.power_cut().unwrap();
}

#[test]
fn qemu_sealed_card_on_another_zymkey_powers_off_without_a_shell() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let mut board = board(&image, "thief", dir.path(), &module);
    attach(&module, &board);
    seal_card(&board, &module, dir.path());

    // The same card on a board carrying another module, bound in production mode.
    let (other, _s2) = zymkey_module(dir.path(), "other");
    attach(&other, &board);
    other.control(json!({"cmd": "cut-tab"})).unwrap();
    board
        .set_zymkey_socket(Some(other.guest_socket().to_path_buf()))
        .unwrap();
    board.power_on().unwrap();
    board
        .console()
        .expect("keybound: sealed:", BOOT_TIMEOUT)
        .unwrap();
    assert_failure_line(
        &board,
        "keybound: sealed: sealed blob refused by the zymkey: locked by another module",
    );
    assert_no_shell_on_console(&board);
    wait_powered_off(&mut board);
}

#[test]
fn qemu_swapped_root_with_a_copied_token_fails_the_volume_check() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let mut board = board(&image, "swap", dir.path(), &module);
    attach(&module, &board);
    let root = seal_card(&board, &module, dir.path());

    // The attacker's volume: another LUKS2 volume (another key, another UUID) given a keyslot
    // the unsealed secret opens (as if the secret had leaked) and a copy of the token.
    let zk = host_zymkey(&module);
    let unsealed = sealed_root::unseal(&root, &zk).unwrap();
    let tokens = sealed_root::read_tokens(&root).unwrap();
    let (_, token) = tokens.zymkey.unwrap();
    let fake_dir = dir.path().join("fake");
    std::fs::create_dir_all(&fake_dir).unwrap();
    let fake = fake_dir.join("root.img");
    std::fs::copy(dir.path().join("root.img"), &fake).unwrap();
    // Start from the plain filesystem again: overwrite with a fresh ext4 of the same size.
    let size = std::fs::metadata(&fake).unwrap().len();
    std::fs::write(&fake, b"").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&fake)
        .unwrap()
        .set_len(size)
        .unwrap();
    run(Command::new("mkfs.ext4").arg("-qF").arg(&fake));
    let _fake_vk = encrypt_in_place(&fake, &fake_dir);
    let secret = fake_dir.join("secret");
    std::fs::write(&secret, unsealed.passphrase()).unwrap();
    run(Command::new("cryptsetup")
        .args(["luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2"])
        .args(["--pbkdf-force-iterations", "1000"])
        .arg("--key-file")
        .arg(fake_dir.join("temp-pass"))
        .arg("--new-keyfile")
        .arg(&secret)
        .arg("--new-key-slot")
        .arg(token.keyslot.to_string())
        .arg(&fake));
    std::fs::remove_file(&secret).unwrap();
    let token_file = fake_dir.join("token.json");
    std::fs::write(&token_file, token.to_json().to_string()).unwrap();
    run(Command::new("cryptsetup")
        .args(["token", "import", "--json-file"])
        .arg(&token_file)
        .arg(&fake));
    let card = board.card().unwrap();
    card.write_range(card.layout().unwrap().root, &fake)
        .unwrap();

    board.power_on().unwrap();
    board
        .console()
        .expect("keybound: sealed:", BOOT_TIMEOUT)
        .unwrap();
    assert_failure_line(&board, "keybound: sealed: volume check failed");
    assert_no_shell_on_console(&board);
    wait_powered_off(&mut board);
}

/// Provisioning in the guest: `keybound provision` writes the plan, the next boot encrypts root
/// in place, enrols the board's Zymkey and the vendor's recovery slot, and boots the sealed
/// root with the data intact; the vendor's tool then opens the card offline with the recovery
/// secret decrypted from the card image alone.
#[test]
fn qemu_provision_in_place_then_boot_sealed_and_vendor_recovery() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let mut board = board(&image, "prov", dir.path(), &module);
    attach(&module, &board);
    let vendor = age::x25519::Identity::generate();
    let recipient = vendor.to_public().to_string();

    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    let dry = board
        .maintenance_exec(&format!(
            "keybound provision --recipient {recipient} --profile pi5 --dry-run"
        ))
        .unwrap();
    assert!(
        dry.contains("mode=in-place") && dry.contains(&recipient),
        "{dry}"
    );
    let out = board
        .maintenance_exec(&format!(
            "echo {MARKER} > /root/provision-marker && keybound provision --recipient {recipient} --profile pi5 2>&1; echo exit=$?; sync"
        ))
        .unwrap();
    assert!(out.contains("exit=0"), "{out}");
    board.power_cut().unwrap();

    board.power_on().unwrap();
    let mark = board.console().mark();
    board
        .console()
        .expect(
            "keybound-init: provisioning: encrypting root in place",
            BOOT_TIMEOUT,
        )
        .unwrap();
    let provisioning_started = std::time::Instant::now();
    board
        .console()
        .expect_after(
            mark,
            "keybound-init: provisioning: done",
            Duration::from_secs(900),
        )
        .unwrap_or_else(|e| panic!("{e:?}\n{}", board.console().tail(30)));
    let provisioning_took = provisioning_started.elapsed();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    eprintln!("figures: provisioning (plan seen → done, wall clock) {provisioning_took:?}");
    let status = board.maintenance_exec("keybound status").unwrap();
    assert!(status.contains("encrypted root"), "{status}");
    let marker = board
        .maintenance_exec("cat /root/provision-marker")
        .unwrap();
    assert_eq!(marker.trim(), MARKER);
    board.power_cut().unwrap();

    // The next boot needs no plan: unlocked by the Zymkey alone.
    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-init: unlocking the sealed root", BOOT_TIMEOUT)
        .unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    board.power_cut().unwrap();

    // Vendor recovery at the desk: the card image and the identity are enough.
    let raw = dir.path().join("card.raw");
    board.card().unwrap().export_raw(&raw).unwrap();
    let identity = dir.path().join("vendor.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&identity, vendor.to_string().expose_secret()).unwrap();
    }
    let vendor_tool = host_artifact("keybound-vendor", "keybound-vendor");
    let secret = run(Command::new(vendor_tool)
        .arg("recovery-secret")
        .arg("--card")
        .arg(&raw)
        .arg("--identity")
        .arg(&identity));
    let secret = secret.trim();
    assert_eq!(secret.len(), 79, "typable recovery secret");
    let card = board.card().unwrap();
    let root = dir.path().join("sealed-root.img");
    card.read_range(card.layout().unwrap().root.luks2_header(), &root)
        .unwrap();
    let key = dir.path().join("recovery");
    std::fs::write(&key, secret).unwrap();
    run(Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&key)
        .arg(&root));
    // A wrong secret is refused by the same check (the check can fail).
    std::fs::write(&key, secret.replace(|c: char| c.is_ascii_digit(), "0")).unwrap();
    let wrong = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&key)
        .arg(&root)
        .status()
        .unwrap();
    assert!(!wrong.success());
    // The whole card holds none of the secrets — sealed secret, volume key, recovery secret —
    // raw, hex or base64; the same search finds a planted copy.
    std::fs::write(&key, secret).unwrap();
    let dump = run(Command::new("cryptsetup")
        .args([
            "luksDump",
            "--dump-volume-key",
            "--batch-mode",
            "--key-file",
        ])
        .arg(&key)
        .arg(&root));
    let volume_key = parse_volume_key_dump(&dump);
    assert_eq!(volume_key.len(), 64, "{}", dump.lines().count());
    let sealed = sealed_root::unseal(&root, &host_zymkey(&module)).unwrap();
    let secrets: [(&str, Vec<u8>); 3] = [
        ("sealed secret", sealed.passphrase().to_vec()),
        ("volume key", volume_key),
        ("recovery secret", secret.as_bytes().to_vec()),
    ];
    let card_bytes = std::fs::read(&raw).unwrap();
    for (what, bytes) in &secrets {
        let forms = encodings(bytes);
        let search = searcher(&forms);
        assert!(!search.is_match(&card_bytes), "the {what} is on the card");
        for form in &forms {
            let mut planted = card_bytes[..1 << 20].to_vec();
            planted[4096..4096 + form.len()].copy_from_slice(form);
            assert!(search.is_match(&planted), "the search finds a planted copy");
        }
    }
}

/// The volume key from `cryptsetup luksDump --dump-volume-key` (hex, over several lines).
fn parse_volume_key_dump(dump: &str) -> Vec<u8> {
    let start = dump
        .find("MK dump:")
        .or_else(|| dump.find("VK dump:"))
        .unwrap();
    let hex: String = dump[start + 8..]
        .split_whitespace()
        .take_while(|t| t.len() == 2 && t.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A secret as raw bytes, lower and upper hex, and base64 (standard, both paddings).
fn encodings(bytes: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        bytes.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(bytes)
            .into_bytes(),
    ]
}

/// One pass over the card for every form of a secret.
fn searcher(forms: &[Vec<u8>]) -> regex::bytes::Regex {
    let alternatives: Vec<String> = forms
        .iter()
        .map(|f| f.iter().map(|b| format!("\\x{b:02x}")).collect())
        .collect();
    regex::bytes::RegexBuilder::new(&format!("(?-u:{})", alternatives.join("|")))
        .size_limit(1 << 26)
        .build()
        .unwrap()
}

/// An edited cmdline.txt on a sealed card: `init=`, `break`, `single`, `emergency` are ignored;
/// the root unlocks as usual and the console gives no shell. (`rdinit=` to a missing program
/// makes the kernel wait for root itself: qemu-runner's qemu_boot covers it.)
#[test]
fn qemu_sealed_card_ignores_cmdline_shell_overrides() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let mut board = board(&image, "edited", dir.path(), &module);
    attach(&module, &board);
    seal_card(&board, &module, dir.path());
    let card = board.card().unwrap();
    let original = String::from_utf8(card.read_boot_file("cmdline.txt").unwrap()).unwrap();
    let edited = format!(
        "{} init=/bin/sh break single emergency systemd.unit=rescue.target\n",
        original.trim()
    );
    card.write_boot_file("cmdline.txt", edited.as_bytes())
        .unwrap();

    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-init: root mounted", BOOT_TIMEOUT)
        .unwrap();
    assert_no_shell_on_console(&board);
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    let init = board.maintenance_exec("readlink /proc/1/exe").unwrap();
    assert!(!init.contains("sh"), "PID 1 is {init}");
    assert!(
        board
            .maintenance_exec("cat /proc/cmdline")
            .unwrap()
            .contains("init=/bin/sh"),
        "the edited command line reached the kernel"
    );
    let root = board.maintenance_exec("keybound status").unwrap();
    assert!(root.contains("encrypted root"), "{root}");
    board.power_cut().unwrap();
}

/// Paths whose contents change between boots by design (logs, caches, state, shell history,
/// the checksum's own output); everything else on root must survive provisioning unchanged.
const VOLATILE: &str = "^/(var/log|var/tmp|var/cache|var/lib|tmp|run|root/\\.ash_history)(/|$)";

/// `sha256sum` of every regular file on root (one filesystem, volatile paths left out), one
/// `HASH  PATH` line each, sorted. Run in the background and polled: hashing all of root under
/// TCG takes longer than one maintenance command may.
fn root_checksums(board: &QemuBoard) -> Vec<String> {
    board
        .maintenance_exec(&format!(
            "mkdir -p /var/tmp && rm -f /var/tmp/kb-sums /var/tmp/kb-sums.done && \
             setsid sh -c \"busybox find / -xdev -type f | busybox grep -Ev '{VOLATILE}' \
              | busybox sort | busybox tr '\\n' '\\0' | busybox xargs -0 sha256sum \
              > /var/tmp/kb-sums; touch /var/tmp/kb-sums.done\" </dev/null >/dev/null 2>&1 &"
        ))
        .unwrap();
    for _ in 0..600 {
        let done = board
            .maintenance_exec("test -e /var/tmp/kb-sums.done && echo done || true")
            .unwrap();
        if done.trim() == "done" {
            let sums = board.maintenance_exec("cat /var/tmp/kb-sums").unwrap();
            let lines: Vec<String> = sums.lines().map(str::to_string).collect();
            assert!(lines.len() > 1000, "too few files hashed: {}", lines.len());
            return lines;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("hashing root did not finish");
}

/// The lines only in one of two checksum lists (empty: the files are the same).
fn checksum_differences(before: &[String], after: &[String]) -> Vec<String> {
    use std::collections::BTreeSet;
    let (b, a): (BTreeSet<_>, BTreeSet<_>) = (before.iter().collect(), after.iter().collect());
    b.symmetric_difference(&a)
        .map(|l| l.to_string())
        .take(20)
        .collect()
}

/// The root partition's `cryptsetup luksDump` (the card read on the host, board off).
fn root_luks_dump(board: &QemuBoard, dir: &Path, name: &str) -> String {
    let card = board.card().unwrap();
    let root = dir.join(name);
    card.read_range(card.layout().unwrap().root.luks2_header(), &root)
        .unwrap();
    let dump = run(Command::new("cryptsetup").arg("luksDump").arg(&root));
    std::fs::remove_file(&root).unwrap();
    dump
}

/// Power cut in the middle of the in-place encryption (a slow card: QMP I/O throttling): the
/// header carries the online-reencrypt requirement and the boot partition the state with the
/// Zymkey-locked temporary passphrase; the next boot resumes, enrols, arms the perimeter
/// policy and boots with every file of root unchanged. Pi 4 profile: Adiantum.
#[test]
fn qemu_power_cut_during_in_place_encryption_resumes_with_the_same_files() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let mut board = board(&image, "cut", dir.path(), &module);
    attach(&module, &board);
    let recipient = age::x25519::Identity::generate().to_public().to_string();

    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    let before = root_checksums(&board);
    let out = board
        .maintenance_exec(&format!(
            "keybound provision --recipient {recipient} --profile pi4 \
             --perimeter ch0=self-destruct,ch1=notify 2>&1; echo exit=$?; sync"
        ))
        .unwrap();
    assert!(out.contains("exit=0"), "{out}");
    board.power_cut().unwrap();

    // Provisioning boot: slow the card once the encryption starts, cut the power at the first
    // progress line.
    let mark = board.console().mark();
    board.power_on().unwrap();
    let (_, started) = board
        .console()
        .expect_guest_after(
            mark,
            "keybound-init: provisioning: reencrypt started",
            BOOT_TIMEOUT,
        )
        .unwrap();
    board.throttle_card(2 << 20).unwrap();
    expect_line(
        &board,
        started,
        "keybound-init: provisioning: encrypted ",
        Duration::from_secs(300),
    );
    board.power_cut().unwrap();

    let dump = root_luks_dump(&board, dir.path(), "cut-root.img");
    assert!(dump.contains("online-reencrypt"), "{dump}");
    assert!(dump.contains("xchacha12,aes-adiantum-plain64"), "{dump}");
    let state = String::from_utf8(
        board
            .card()
            .unwrap()
            .read_boot_file("keybound-provision.state")
            .unwrap(),
    )
    .unwrap();
    assert!(
        state.contains("stage=encrypting") && state.contains("temporary="),
        "{state}"
    );
    // The temporary passphrase is on the card only locked: the board's module unlocks the
    // blob, and no form of the passphrase is anywhere on the card.
    let blob_hex = state
        .lines()
        .find_map(|l| l.strip_prefix("temporary="))
        .unwrap();
    let blob: Vec<u8> = (0..blob_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&blob_hex[i..i + 2], 16).unwrap())
        .collect();
    let pass = host_zymkey(&module)
        .unlock(&blob, zymkey::LockKey::OneWay)
        .unwrap();
    let card = board.card().unwrap();
    // (Mid-reencryption libcryptsetup opens no keyslot offline; the resume below proves the
    // passphrase right.) 32 random bytes in hex, as keybound-init makes it.
    assert!(
        pass.len() == 64 && pass.iter().all(|c| c.is_ascii_hexdigit()),
        "the unlocked blob is a temporary passphrase"
    );
    let raw = dir.path().join("cut-card.raw");
    card.export_raw(&raw).unwrap();
    let card_bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    let pass_bytes: Vec<u8> = (0..pass.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(std::str::from_utf8(&pass[i..i + 2]).unwrap(), 16).unwrap())
        .collect();
    for secret in [pass.to_vec(), pass_bytes] {
        let search = searcher(&encodings(&secret));
        assert!(
            !search.is_match(&card_bytes),
            "the temporary passphrase is on the card"
        );
    }

    // Next boot: resumes and finishes.
    let mark = board.console().mark();
    board.power_on().unwrap();
    let (_, resuming) = expect_line(
        &board,
        mark,
        "keybound-init: provisioning: resuming the interrupted encryption",
        BOOT_TIMEOUT,
    );
    let resume_started = std::time::Instant::now();
    expect_line(
        &board,
        resuming,
        "keybound-init: provisioning: done",
        Duration::from_secs(900),
    );
    let resume_took = resume_started.elapsed();
    board
        .console()
        .expect_guest_after(
            resuming,
            "keybound-init: provisioning: perimeter armed \\(ch0=self-destruct,ch1=notify\\)",
            Duration::from_secs(5),
        )
        .unwrap();
    board
        .console()
        .expect_guest_after(resuming, "keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    eprintln!("figures: resume after the power cut (resuming → done, wall clock) {resume_took:?}");
    let status = board.maintenance_exec("keybound status").unwrap();
    assert!(status.contains("encrypted root"), "{status}");
    let after = root_checksums(&board);
    let diff = checksum_differences(&before, &after);
    assert!(diff.is_empty(), "root files changed: {diff:#?}");

    // The module has the policy; the boot partition no longer has the state or the plan.
    let zk = module.control(json!({"cmd": "status"})).unwrap();
    assert_eq!(zk["perimeter"][0]["actions"], 2, "{zk}");
    assert_eq!(zk["perimeter"][1]["actions"], 1, "{zk}");
    board.power_cut().unwrap();
    let card = board.card().unwrap();
    assert!(card.read_boot_file("keybound-provision.state").is_err());
    assert!(card.read_boot_file("keybound-provision.plan").is_err());
    let dump = root_luks_dump(&board, dir.path(), "done-root.img");
    assert!(!dump.contains("online-reencrypt"), "{dump}");
    assert!(dump.contains("keybound-zymkey") && dump.contains("keybound-recovery"));
    assert!(
        !dump.contains("\n  0: luks2"),
        "the temporary keyslot is gone: {dump}"
    );
}

/// Power cut in the middle of `keybound rotate` (online re-encryption under a new volume key,
/// the card slowed with QMP I/O throttling so the cut lands mid-way): the header carries the
/// reencrypt requirement and the pending rotation; the next boot's keybound-init finishes it
/// offline with the Zymkey alone before unlocking, every root file is unchanged, the volume
/// check holds for the new key and only the two new keyslots are left.
#[test]
fn qemu_power_cut_during_key_rotation_is_finished_by_the_next_boot() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let mut board = board(&image, "rotcut", dir.path(), &module);
    attach(&module, &board);
    seal_card(&board, &module, dir.path());
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let tokens_before = root_tokens(&board, dir.path());

    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    let before = root_checksums(&board);
    // The slowed card leaves no room for ssh: rotate reports on the serial console.
    board.throttle_card(6 << 20).unwrap();
    let mark = board.console().mark();
    board
        .maintenance_exec(&format!(
            "setsid sh -c 'keybound rotate --recipient {recipient}; echo rotate-exit=$?' \
             </dev/null >/dev/console 2>&1 & echo started"
        ))
        .unwrap();
    let (seen, _) = expect_line(
        &board,
        mark,
        "keybound rotate: re-encrypted [0-9]+%|rotate-exit=",
        Duration::from_secs(600),
    );
    assert!(
        !seen.contains("rotate-exit="),
        "the rotation ended before the cut: {}",
        board.console().tail(20)
    );
    board.power_cut().unwrap();

    let dump = root_luks_dump(&board, dir.path(), "rotcut-root.img");
    assert!(dump.contains("online-reencrypt"), "{dump}");
    assert!(dump.contains("keybound-rotation"), "{dump}");

    let mark = board.console().mark();
    board.power_on().unwrap();
    let (_, finished) = expect_line(
        &board,
        mark,
        "keybound-init: finished an interrupted key rotation",
        Duration::from_secs(900),
    );
    expect_line(&board, finished, "keybound-guest: sshd ready", BOOT_TIMEOUT);
    let after = root_checksums(&board);
    let diff = checksum_differences(&before, &after);
    assert!(diff.is_empty(), "root files changed: {diff:#?}");
    board.power_cut().unwrap();

    let dump = root_luks_dump(&board, dir.path(), "rotated-root.img");
    assert!(!dump.contains("online-reencrypt"), "{dump}");
    assert!(!dump.contains("keybound-rotation"), "{dump}");
    let recovery = |t: &sealed_root::Tokens| t.recovery.as_ref().unwrap().1.age_ciphertext.clone();
    let tokens_after = root_tokens(&board, dir.path());
    assert!(
        tokens_after.zymkey.is_some(),
        "the zymkey token is in place"
    );
    assert_ne!(
        recovery(&tokens_before),
        recovery(&tokens_after),
        "the recovery token holds a new secret"
    );
    assert_eq!(
        dump.matches(": luks2").count(),
        2,
        "only the two new keyslots are left: {dump}"
    );
}

/// A factory-fresh card for `keybound provision --fresh`: the test image's boot files and, from
/// the real CLI run with `--boot-dir`, the plan and the vendor's root image (the test image's
/// root filesystem shrunk to its minimum, with a marker file) on a boot partition big enough
/// for it; root an empty partition 256 MiB larger than the image. Returns the card, the
/// staged boot files and the image's filesystem size.
fn fresh_card(image: &BuiltImage, dir: &Path, recipient: &str) -> (Card, PathBuf, u64) {
    let src = Card::overlay(&image.card, "raw", dir.join("src.qcow2")).unwrap();
    let src_layout = src.layout().unwrap();
    let rootfs = dir.join("rootfs.ext4");
    src.read_range(src_layout.root, &rootfs).unwrap();
    let marker = dir.join("marker");
    std::fs::write(&marker, MARKER).unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} /root/fresh-marker", marker.display()))
        .arg(&rootfs));
    run(Command::new("e2fsck").arg("-fy").arg(&rootfs));
    run(Command::new("resize2fs").arg("-M").arg(&rootfs));
    let dump = run(Command::new("dumpe2fs").arg("-h").arg(&rootfs));
    let field = |name: &str| -> u64 {
        dump.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("{name} in dumpe2fs"))
    };
    let fs_bytes = field("Block count:") * field("Block size:");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&rootfs)
        .unwrap()
        .set_len(fs_bytes)
        .unwrap();

    let staged = dir.join("boot-staged");
    std::fs::create_dir(&staged).unwrap();
    run(Command::new(host_artifact("keybound-admin", "keybound"))
        .args(["provision", "--recipient", recipient, "--profile", "pi5"])
        .args(["--binding", "any", "--fresh", "--root-image"])
        .arg(&rootfs)
        .arg("--boot-dir")
        .arg(&staged));
    std::fs::remove_file(&rootfs).unwrap();

    let image_bytes = std::fs::metadata(staged.join("keybound-root.img"))
        .unwrap()
        .len();
    let layout = card::CardLayout::plan(
        0x4b42_f7e5,
        (image_bytes >> 20) + 160,
        fs_bytes + (256 << 20),
    );
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for name in src.list_boot_files().unwrap() {
        let mut bytes = src.read_boot_file(&name).unwrap();
        if name == "cmdline.txt" {
            bytes = String::from_utf8(bytes)
                .unwrap()
                .replace(&src_layout.root_partuuid(), &layout.root_partuuid())
                .into_bytes();
        }
        files.push((name, bytes));
    }
    for entry in std::fs::read_dir(&staged).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((name, std::fs::read(&path).unwrap()));
    }
    let boot_img = dir.join("boot.img");
    let mut boot = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&boot_img)
        .unwrap();
    boot.set_len(layout.boot.size).unwrap();
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    card::boot_fs::format(&mut boot, &borrowed).unwrap();
    drop(files);
    let raw = dir.join("fresh-card.raw");
    let mut disk = std::fs::File::create(&raw).unwrap();
    disk.set_len(layout.card_size()).unwrap();
    layout.write_mbr(&mut disk).unwrap();
    drop(disk);
    let card = Card::overlay(&raw, "raw", dir.join("fresh-card.qcow2")).unwrap();
    card.write_range(layout.boot, &boot_img).unwrap();
    std::fs::remove_file(&boot_img).unwrap();
    (card, staged, fs_bytes)
}

/// `keybound provision --fresh --root-image`: a plan whose image digest does not match is
/// refused before root is touched; the right one formats root anew as LUKS2, writes the image
/// into it, grows it, enrols and boots the sealed root with the image's files; the image, plan
/// and state are gone from the boot partition, and no byte of the system is readable on root.
#[test]
fn qemu_fresh_provisioning_formats_root_from_the_vendors_image() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let (card, staged, image_fs_bytes) = fresh_card(&image, dir.path(), &recipient);
    let mut board = board_with_card(&image, "fresh", dir.path(), &module, card);
    attach(&module, &board);

    // A damaged image (its digest in the plan no longer matches): refused, nothing written.
    let plan = std::fs::read_to_string(staged.join("keybound-provision.plan")).unwrap();
    let wrong_digest = plan
        .lines()
        .map(|l| match l.strip_prefix("root-image-sha256=") {
            Some(hex) => format!(
                "root-image-sha256={}{}",
                if hex.starts_with('0') { "1" } else { "0" },
                &hex[1..]
            ),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(wrong_digest, plan);
    let card = board.card().unwrap();
    card.write_boot_file("keybound-provision.plan", wrong_digest.as_bytes())
        .unwrap();
    let mark = board.console().mark();
    board.power_on().unwrap();
    expect_line(
        &board,
        mark,
        "keybound: provisioning refused: root image keybound-root.img does not match the plan's SHA-256",
        BOOT_TIMEOUT,
    );
    // Root is still empty: the boot fails closed and the board powers itself off.
    wait_powered_off(&mut board);
    let card = board.card().unwrap();
    assert!(card.read_boot_file("keybound-provision.plan").is_err());
    let layout = card.layout().unwrap();
    let head = dir.path().join("root-head.img");
    card.read_range(layout.root.luks2_header(), &head).unwrap();
    assert!(
        std::fs::read(&head).unwrap().iter().all(|b| *b == 0),
        "root was written although the plan was refused"
    );
    std::fs::remove_file(&head).unwrap();

    // The vendor's plan as written: formatted, filled, enrolled, booted.
    card.write_boot_file("keybound-provision.plan", plan.as_bytes())
        .unwrap();
    let mark = board.console().mark();
    board.power_on().unwrap();
    let (_, formatted) = expect_line(
        &board,
        mark,
        "keybound-init: provisioning: formatted",
        BOOT_TIMEOUT,
    );
    expect_line(
        &board,
        formatted,
        "keybound-init: provisioning: done",
        Duration::from_secs(600),
    );
    expect_line(
        &board,
        formatted,
        "keybound-guest: sshd ready",
        BOOT_TIMEOUT,
    );
    let marker = board.maintenance_exec("cat /root/fresh-marker").unwrap();
    assert_eq!(marker.trim(), MARKER);
    let status = board.maintenance_exec("keybound status").unwrap();
    assert!(status.contains("encrypted root"), "{status}");
    // The filesystem was grown to fill the volume (the image was shrunk to its minimum).
    let size = board
        .maintenance_exec("df -m / | awk 'NR == 2 { print $2 }'")
        .unwrap();
    let fs_mib: u64 = size.trim().parse().unwrap();
    assert!(
        fs_mib << 20 > image_fs_bytes + (160 << 20),
        "root fs {fs_mib} MiB, the image's {} MiB: not grown",
        image_fs_bytes >> 20
    );
    board.power_cut().unwrap();

    let card = board.card().unwrap();
    let files = card.list_boot_files().unwrap();
    for gone in [
        "keybound-root.img",
        "keybound-provision.plan",
        "keybound-provision.state",
    ] {
        assert!(
            !files.iter().any(|f| f == gone),
            "{gone} left on the boot partition: {files:?}"
        );
    }
    let dump = root_luks_dump(&board, dir.path(), "fresh-root.img");
    assert!(dump.contains("aes-xts-plain64"), "{dump}");
    assert!(
        dump.contains("keybound-zymkey") && dump.contains("keybound-recovery"),
        "{dump}"
    );
    assert_eq!(
        dump.matches(": luks2").count(),
        2,
        "only the sealed and recovery keyslots: {dump}"
    );
    // Nothing of the system in clear anywhere on the card: not in root, and not left behind in
    // the boot partition's free clusters by the deleted image.
    let raw = dir.path().join("fresh-card-all.raw");
    card.export_raw(&raw).unwrap();
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    for needle in [MARKER, "root:x:0:0:root:/root:"] {
        let re = regex::bytes::Regex::new(&regex::escape(needle)).unwrap();
        assert!(!re.is_match(&bytes), "{needle} is readable on the card");
    }
}

/// The keybound tokens of the card's root (read on the host, board off).
fn root_tokens(board: &QemuBoard, dir: &Path) -> sealed_root::Tokens {
    let card = board.card().unwrap();
    let root = dir.join("tokens-root.img");
    card.read_range(card.layout().unwrap().root.luks2_header(), &root)
        .unwrap();
    let tokens = sealed_root::read_tokens(&root).unwrap();
    std::fs::remove_file(&root).unwrap();
    tokens
}

/// A sealed card: `keybound provision` is refused without `--re-enrol`; with it keybound-init
/// replaces the sealed and recovery secrets (same volume key: the data stays) and the board
/// boots. Then a perimeter breach on the channel armed with self-destruct: the next boot
/// prints exactly why it cannot unlock and powers off.
#[test]
fn qemu_re_enrol_on_a_sealed_card_then_a_self_destruct_breach_seals_it_for_good() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module");
    let mut board = board(&image, "reenrol", dir.path(), &module);
    attach(&module, &board);
    seal_card(&board, &module, dir.path());
    let before = root_tokens(&board, dir.path());
    let recipient = age::x25519::Identity::generate().to_public().to_string();

    board.power_on().unwrap();
    board
        .console()
        .expect("keybound-guest: sshd ready", BOOT_TIMEOUT)
        .unwrap();
    let refused = board
        .maintenance_exec(&format!(
            "keybound provision --recipient {recipient} --profile pi5 2>&1; echo exit=$?"
        ))
        .unwrap();
    assert!(
        refused.contains("already sealed") && refused.contains("--re-enrol"),
        "{refused}"
    );
    assert!(!refused.contains("exit=0"), "{refused}");
    let out = board
        .maintenance_exec(&format!(
            "echo {MARKER} > /root/re-enrol-marker && keybound provision --recipient {recipient} \
             --profile pi5 --re-enrol --perimeter ch0=self-destruct 2>&1; echo exit=$?; sync"
        ))
        .unwrap();
    assert!(out.contains("exit=0"), "{out}");
    board.power_cut().unwrap();

    let mark = board.console().mark();
    board.power_on().unwrap();
    let (_, at) = board
        .console()
        .expect_guest_after(
            mark,
            "keybound-init: provisioning: re-enrolling the sealed root",
            BOOT_TIMEOUT,
        )
        .unwrap();
    for line in [
        "keybound-init: provisioning: perimeter armed \\(ch0=self-destruct\\)",
        "keybound-init: provisioning: done",
        "keybound-init: unlocking the sealed root",
        "keybound-guest: sshd ready",
    ] {
        board
            .console()
            .expect_guest_after(at, line, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{line}: {e:?}\n{}", board.console().tail(30)));
    }
    let marker = board
        .maintenance_exec("cat /root/re-enrol-marker /root/sealed-marker")
        .unwrap();
    assert!(marker.contains(MARKER), "{marker}");
    board.power_cut().unwrap();
    let after = root_tokens(&board, dir.path());
    let (old_z, new_z) = (before.zymkey.unwrap().1, after.zymkey.unwrap().1);
    assert_ne!(old_z.sealed_blob, new_z.sealed_blob, "a new sealed secret");
    assert_ne!(
        before.recovery.unwrap().1.age_ciphertext,
        after.recovery.unwrap().1.age_ciphertext,
        "a new recovery secret"
    );
    let zk = module.control(json!({"cmd": "status"})).unwrap();
    assert_eq!(zk["perimeter"][0]["actions"], 2, "{zk}");

    // The case is opened: channel 0 breaks, the module destroys its keys.
    module
        .control(json!({"cmd": "breach", "channel": 0}))
        .unwrap();
    board.power_on().unwrap();
    board
        .console()
        .expect("keybound: sealed:", BOOT_TIMEOUT)
        .unwrap();
    assert_failure_line(
        &board,
        "keybound: sealed: zymkey destroyed its keys (perimeter breach with self-destruct)",
    );
    assert_no_shell_on_console(&board);
    wait_powered_off(&mut board);
}
