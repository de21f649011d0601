//! Vendor recovery and rotation in a QEMU guest, end to end, and the "no secret in any
//! transcript or guest log" check (issue 4).
//!
//! A card is provisioned in the guest (`keybound provision`, sealed on the next boot, which
//! comes up on the sealed root). At the vendor's desk `keybound-vendor recovery-secret` decrypts the recovery secret
//! from the card image. The card moves to a board with a new Zymkey: it is sealed there
//! (`keybound: sealed:` line, power off). On the vendor's bench the card is re-sealed to the
//! new module (`keybound reseal --device`, the secret on stdin; the bench reaches the board's
//! module as a service OS on that board would), and it boots. `keybound rotate` in the guest
//! re-encrypts root online: the old recovery secret and the old volume key no longer open the
//! card, the new recovery secret (decrypted by the vendor again) does, the data is intact and
//! the card still boots. Finally every console transcript, QEMU log, ssh/maintenance log, the
//! guest's /var/log and dmesg are searched for the sealed secret, the volume keys and both
//! recovery secrets (raw, hex, base64 and the typable form): none is found, and the same search
//! finds a planted copy.

#[path = "../../sealed-root/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use board::Board;
use board::Mark;
use card::Card;
use guest_image::{BuiltImage, Profile, Progress};
use qemu_runner::{QemuBoard, QemuBoardConfig, ZymkeyModule};
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
const MARKER: &str = "written-before-provisioning-0815";
const READY: &str = "keybound-guest: sshd ready";

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

/// A host-built artifact next to the test binary (builds its package if absent).
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

fn board(image: &BuiltImage, name: &str, dir: &Path, module: &ZymkeyModule) -> QemuBoard {
    let mut config = QemuBoardConfig::new(name, dir.join(name), image.manifest.host_key.clone());
    config.maintenance_key = Some(guest_image::maintenance_key(&repo()));
    config.zymkey_socket = Some(module.guest_socket().to_path_buf());
    let mut board = QemuBoard::new(config).unwrap();
    board
        .insert_card(
            Card::overlay(&image.card, "raw", dir.join(format!("{name}-card.qcow2"))).unwrap(),
        )
        .unwrap();
    board
}

fn attach(module: &ZymkeyModule, board: &QemuBoard) {
    module
        .attach(&board.config().board_serial, board.card().unwrap().serial())
        .unwrap();
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

/// Powers on; returns the console mark of this boot.
fn power_on(board: &mut QemuBoard) -> Mark {
    let mark = board.console().mark();
    board.power_on().unwrap();
    mark
}

/// Waits for `line` in this boot's console output.
fn expect(board: &QemuBoard, mark: Mark, line: &str, timeout: Duration) {
    board
        .console()
        .expect_after(mark, line, timeout)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", board.console().tail(30)));
}

fn wait_powered_off(board: &mut QemuBoard) {
    for _ in 0..300 {
        if !board.is_powered() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the board did not power off: {}", board.console().tail(20));
}

/// A maintenance-channel (ssh) command; the command and its output are appended to the test's
/// ssh session log, which the secret search reads like every other transcript.
fn ssh(board: &QemuBoard, log: &Path, command: &str) -> String {
    // Long enough for an online re-encryption of root while other boards share the cores.
    let out = board
        .maintenance_exec_for(command, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{command}: {e}\n{}", board.console().tail(20)));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(f, "$ {command}\n{out}").unwrap();
    out
}

/// The vendor's desk: `keybound-vendor recovery-secret` on the exported card image.
fn vendor_recovery_secret(board: &QemuBoard, dir: &Path, identity: &Path) -> String {
    let raw = dir.join("desk-card.raw");
    board.card().unwrap().export_raw(&raw).unwrap();
    let tool = host_artifact("keybound-vendor", "keybound-vendor");
    let out = run(Command::new(tool)
        .arg("recovery-secret")
        .arg("--card")
        .arg(&raw)
        .arg("--identity")
        .arg(identity));
    std::fs::remove_file(&raw).unwrap();
    let secret = out.trim().to_string();
    assert_eq!(secret.len(), 79, "a typable recovery secret");
    secret
}

/// The LUKS2 header of the board's card root, as an image file (all the recovery, reseal and
/// key checks need: the data area stays on the card).
fn root_header_image(board: &QemuBoard, path: &Path) {
    let card = board.card().unwrap();
    card.read_range(card.layout().unwrap().root.luks2_header(), path)
        .unwrap();
}

/// `cryptsetup open --test-passphrase` with `key` (any keyslot).
fn passphrase_opens(root: &Path, key: &[u8]) -> bool {
    let mut child = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file=-"])
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(key).unwrap();
    child.wait().unwrap().success()
}

/// The volume key, dumped on purpose (test only) with the recovery secret.
fn dump_volume_key(root: &Path, dir: &Path, secret: &str) -> Vec<u8> {
    let key = dir.join("dump-key");
    std::fs::write(&key, secret).unwrap();
    let dump = run(Command::new("cryptsetup")
        .args([
            "luksDump",
            "--dump-volume-key",
            "--batch-mode",
            "--key-file",
        ])
        .arg(&key)
        .arg(root));
    std::fs::remove_file(&key).unwrap();
    let start = dump
        .find("MK dump:")
        .or_else(|| dump.find("VK dump:"))
        .expect("a volume key dump");
    let hex: String = dump[start + 8..]
        .split_whitespace()
        .take_while(|t| t.len() == 2 && t.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// `cryptsetup open --test-passphrase --volume-key-file`: does `key` still decrypt the volume?
fn volume_key_opens(root: &Path, dir: &Path, key: &[u8]) -> bool {
    let file = dir.join("vk-probe");
    std::fs::write(&file, key).unwrap();
    let ok = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--volume-key-file"])
        .arg(&file)
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    std::fs::remove_file(&file).unwrap();
    ok
}

/// The recovery secret's raw bytes from its typable form.
fn recovery_bytes(typable: &str) -> Vec<u8> {
    let hex: String = typable.chars().filter(char::is_ascii_hexdigit).collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Every log-like file the harness wrote under `dir` (console transcripts, QEMU logs, ssh and
/// maintenance logs): all regular files except disk images and the booted kernel/initramfs.
fn transcripts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                // The card's boot files (copied for QEMU) and the modules' own state (the
                // emulated hardware, not a log) are not transcripts.
                if p.file_name()
                    .is_some_and(|n| n == "boot" || n == "module-a" || n == "module-b")
                {
                    continue;
                }
                stack.push(p);
            } else if ft.is_file() {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let image = [".qcow2", ".raw", ".img", ".qcow"]
                    .iter()
                    .any(|s| name.ends_with(s));
                if !image {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// Searches `haystacks` for every form of every secret; returns "what (form) in where". One
/// pass per haystack over all forms; the detailed search runs only where something matched.
fn search(haystacks: &[(String, Vec<u8>)], secrets: &[(&str, Vec<u8>)]) -> Vec<String> {
    let alternatives: Vec<String> = secrets
        .iter()
        .flat_map(|(_, bytes)| common::encodings(bytes))
        .map(|(_, needle)| needle.iter().map(|b| format!("\\x{b:02x}")).collect())
        .collect();
    let any = regex::bytes::RegexBuilder::new(&format!("(?-u:{})", alternatives.join("|")))
        .size_limit(1 << 26)
        .build()
        .unwrap();
    let mut found = Vec::new();
    for (place, hay) in haystacks {
        if !any.is_match(hay) {
            continue;
        }
        for (what, bytes) in secrets {
            for form in common::found_in(hay, bytes) {
                found.push(format!("{what} ({form}) in {place}"));
            }
        }
    }
    found
}

#[test]
fn qemu_recovery_reseal_to_a_new_module_then_rotate_and_no_secret_in_any_log() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (module, _s) = zymkey_module(dir.path(), "module-a");
    let mut board = board(&image, "field", dir.path(), &module);
    attach(&module, &board);
    let vendor = age::x25519::Identity::generate();
    let recipient = vendor.to_public().to_string();
    let identity = dir.path().join("vendor.key");
    let ssh_log = dir.path().join("ssh-session.log");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&identity, vendor.to_string().expose_secret()).unwrap();
    }

    // Provision in the guest; the next boot seals root in place.
    let boot = power_on(&mut board);
    expect(&board, boot, READY, BOOT_TIMEOUT);
    let out = ssh(
        &board,
        &ssh_log,
        &format!(
            "echo {MARKER} > /root/recovery-marker && keybound provision --recipient {recipient} --profile pi5 2>&1; echo exit=$?; sync"
        ),
    );
    assert!(out.contains("exit=0"), "{out}");
    board.power_cut().unwrap();
    let boot = power_on(&mut board);
    expect(
        &board,
        boot,
        "keybound-init: provisioning: done",
        Duration::from_secs(900),
    );
    expect(&board, boot, READY, BOOT_TIMEOUT);
    board.power_cut().unwrap();
    // (The sealed boots that follow — on the new module after the reseal, and after the
    // rotation — show the Zymkey alone unlocking it; qemu_sealed_root covers a plain reboot.)

    // The vendor's desk: the recovery secret from the card image alone.
    let old_secret = vendor_recovery_secret(&board, dir.path(), &identity);

    // The card on a board with a new module: sealed there.
    let (new_module, _s2) = zymkey_module(dir.path(), "module-b");
    attach(&new_module, &board);
    new_module.control(json!({"cmd": "cut-tab"})).unwrap();
    board
        .set_zymkey_socket(Some(new_module.guest_socket().to_path_buf()))
        .unwrap();
    let boot = power_on(&mut board);
    expect(&board, boot, "keybound: sealed:", BOOT_TIMEOUT);
    wait_powered_off(&mut board);

    // The vendor's bench: the card re-sealed to the new module, the secret typed on stdin
    // (the bench's service OS runs on the board, so it reaches the board's new module; here
    // the host's keybound reaches it through the module's socket).
    let root = dir.path().join("bench-root.img");
    root_header_image(&board, &root);
    let old_volume_key = dump_volume_key(&root, dir.path(), &old_secret);
    assert!(volume_key_opens(&root, dir.path(), &old_volume_key));
    let lib_dir = zymkey_testkit::library_path()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut reseal = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["reseal", "--device"])
        .arg(&root)
        .env("KEYBOUND_ZK_SOCKET", new_module.guest_socket())
        .env("LD_LIBRARY_PATH", lib_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    reseal
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{old_secret}\n").as_bytes())
        .unwrap();
    let out = reseal.wait_with_output().unwrap();
    let bench_log = [out.stdout.clone(), out.stderr.clone()].concat();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&bench_log)
    );
    std::fs::write(dir.path().join("bench.log"), &bench_log).unwrap();
    let card = board.card().unwrap();
    card.write_range(card.layout().unwrap().root.luks2_header(), &root)
        .unwrap();
    std::fs::remove_file(&root).unwrap();

    // It boots on the new module.
    let boot = power_on(&mut board);
    expect(&board, boot, "keybound-init: root mounted", BOOT_TIMEOUT);
    expect(&board, boot, READY, BOOT_TIMEOUT);
    let marker = ssh(&board, &ssh_log, "cat /root/recovery-marker");
    assert_eq!(marker.trim(), MARKER);

    // Rotate online, in the running system.
    let started = std::time::Instant::now();
    let out = ssh(
        &board,
        &ssh_log,
        &format!("keybound rotate --recipient {recipient} 2>&1; echo exit=$?; sync"),
    );
    let rotate_took = started.elapsed();
    assert!(
        out.contains("exit=0") && out.contains("volume check verified"),
        "{out}"
    );
    assert!(out.contains("(online)"), "{out}");
    eprintln!(
        "figures: keybound rotate (online re-encryption of root, in the guest) {rotate_took:?}"
    );
    let status: Value =
        serde_json::from_str(&ssh(&board, &ssh_log, "keybound status --json")).unwrap();
    assert_eq!(status["protection"]["level"], "card-theft-only", "{status}");
    assert_eq!(status["binding"], "zymkey+recovery", "{status}");
    assert_eq!(
        status["volume"]["keyslots"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    assert_eq!(
        ssh(&board, &ssh_log, "cat /root/recovery-marker").trim(),
        MARKER
    );
    // The guest's logs, for the search below (tar of /var/log, and the kernel log).
    let var_log = ssh(
        &board,
        &ssh_log,
        "busybox tar -C /var/log -cf - . | busybox base64",
    );
    let var_log = {
        use base64::Engine;
        let text: String = var_log.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64 of /var/log")
    };
    assert!(!var_log.is_empty(), "a tar of /var/log");
    let dmesg = ssh(&board, &ssh_log, "busybox dmesg");
    board.power_cut().unwrap();

    // The rotated card boots (the volume check was re-sealed to the new key).
    let boot = power_on(&mut board);
    expect(&board, boot, "keybound-init: root mounted", BOOT_TIMEOUT);
    expect(&board, boot, READY, BOOT_TIMEOUT);
    assert_eq!(
        ssh(&board, &ssh_log, "cat /root/recovery-marker").trim(),
        MARKER
    );
    board.power_cut().unwrap();

    // The vendor's desk again: the old secret and the old key are dead, the new secret opens.
    let new_secret = vendor_recovery_secret(&board, dir.path(), &identity);
    assert_ne!(new_secret, old_secret);
    let root = dir.path().join("after-root.img");
    root_header_image(&board, &root);
    assert!(
        !passphrase_opens(&root, old_secret.as_bytes()),
        "the old recovery secret still opens the card"
    );
    assert!(
        !volume_key_opens(&root, dir.path(), &old_volume_key),
        "the old volume key still decrypts the card"
    );
    assert!(passphrase_opens(&root, new_secret.as_bytes()));
    // Only now, and only for this test: the new volume key and the sealed secret.
    let new_volume_key = dump_volume_key(&root, dir.path(), &new_secret);
    assert_ne!(new_volume_key, old_volume_key);
    let lib = zymkey::Library::load_from(zymkey_testkit::library_path()).unwrap();
    // SAFETY: this test process sets the variable once, before its only zkOpen.
    unsafe { std::env::set_var("KEYBOUND_ZK_SOCKET", new_module.guest_socket()) };
    let zk = zymkey::Zymkey::open(&lib).unwrap();
    let sealed = sealed_root::unseal(&root, &zk).unwrap();
    sealed.verify_volume(&root).unwrap();
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("sealed secret", sealed.passphrase().to_vec()),
        ("old volume key", old_volume_key),
        ("new volume key", new_volume_key),
        ("old recovery secret", recovery_bytes(&old_secret)),
        (
            "old recovery secret, typed",
            old_secret.clone().into_bytes(),
        ),
        ("new recovery secret", recovery_bytes(&new_secret)),
        (
            "new recovery secret, typed",
            new_secret.clone().into_bytes(),
        ),
    ];
    let raw = dir.path().join("final-card.raw");
    board.card().unwrap().export_raw(&raw).unwrap();
    let mut haystacks: Vec<(String, Vec<u8>)> = transcripts(dir.path())
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != "vendor.key"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    let files = haystacks.len();
    eprintln!(
        "searched files: {:?}",
        haystacks
            .iter()
            .map(|(p, _)| p.rsplit('/').next().unwrap_or(p))
            .collect::<Vec<_>>()
    );
    for log in ["console.log", "qemu.log", "ssh-session.log", "bench.log"] {
        assert!(
            haystacks.iter().any(|(p, _)| p.ends_with(log)),
            "{log} is searched: {:?}",
            haystacks.iter().map(|h| &h.0).collect::<Vec<_>>()
        );
    }
    haystacks.push(("guest /var/log".into(), var_log));
    haystacks.push(("guest dmesg".into(), dmesg.into_bytes()));
    haystacks.push(("the card image".into(), std::fs::read(&raw).unwrap()));
    let found = search(&haystacks, &secrets);
    assert!(found.is_empty(), "secrets found: {found:#?}");
    eprintln!(
        "figures: searched {files} harness files, guest /var/log, dmesg and the card for {} secrets",
        secrets.len()
    );

    // The control: the same search finds a copy planted in a transcript, in every form.
    let (place, console) = haystacks
        .iter()
        .find(|(p, _)| p.ends_with("console.log"))
        .unwrap()
        .clone();
    for (what, bytes) in &secrets {
        for (form, encoded) in common::encodings(bytes) {
            let mut planted = console.clone();
            planted.extend_from_slice(b"\n[planted] ");
            planted.extend_from_slice(&encoded);
            planted.push(b'\n');
            let hit = search(&[(place.clone(), planted)], &[(what, bytes.clone())]);
            assert!(!hit.is_empty(), "a planted {what} ({form}) is not found");
        }
    }
}
