//! The Raspberry Pi OS mode on the host: `keybound-keyscript` prints exactly the unsealed key
//! cryptsetup needs (and nothing for another module), and the initramfs-tools files in
//! fixtures/rpios parse (`sh -n`, shellcheck when installed) and refuse the shell-granting
//! command-line options. Nothing here can power the host off: the scripts never call the real
//! poweroff outside an initramfs, and the tests shadow it anyway.

#[path = "../../sealed-root/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Module, fresh_volume, vendor};
use sealed_root::{RecoveryKdf, enroll};

fn rpios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/rpios")
}

const HOOK: &str = "initramfs-tools/hooks/keybound";
const CMDLINE: &str = "initramfs-tools/scripts/init-top/keybound-cmdline";

fn keyscript(device: &Path, module: &Module) -> Output {
    let lib_dir = zymkey_testkit::library_path()
        .parent()
        .unwrap()
        .to_path_buf();
    Command::new(env!("CARGO_BIN_EXE_keybound-keyscript"))
        .arg("none")
        .env("CRYPTTAB_SOURCE", device)
        .env("KEYBOUND_ZK_SOCKET", module.socket())
        .env("LD_LIBRARY_PATH", lib_dir)
        .output()
        .unwrap()
}

/// What cryptroot does with the keyscript's output: `cryptsetup --key-file=-`.
fn cryptsetup_accepts(device: &Path, key: &[u8]) -> bool {
    let mut child = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file=-"])
        .arg(device)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(key).unwrap();
    child.wait().unwrap().success()
}

#[test]
fn keyscript_prints_the_unsealed_key_for_cryptsetup_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let (_, recipient) = vendor();
    enroll(
        &img,
        &vk,
        &m.open(),
        &recipient,
        RecoveryKdf::ReducedForTests,
    )
    .unwrap();

    let out = keyscript(&img, &m);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 32, "exactly the 32-byte sealed secret");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cryptsetup_accepts(&img, &out.stdout));
    assert!(!cryptsetup_accepts(&img, b"something else"));

    // Another module: one sealed line, nothing for cryptsetup.
    let other = Module::start("board-1", "card-1");
    let out = keyscript(&img, &other);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("keybound: sealed: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn keyscript_without_a_device_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_keybound-keyscript"))
        .env_remove("CRYPTTAB_SOURCE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CRYPTTAB_SOURCE"), "{err}");
}

#[test]
fn shell_files_parse() {
    for file in [HOOK, CMDLINE] {
        let path = rpios().join(file);
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "{file}: {out:?}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert!(mode & 0o111 != 0, "{file} is not executable");
        match Command::new("shellcheck")
            .args(["-s", "sh"])
            .arg(&path)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "shellcheck {file}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(_) => eprintln!("shellcheck not installed: {file} checked with sh -n only"),
        }
    }
}

/// A directory with a `poweroff` and a `sleep` that only report, first on PATH.
fn fake_tools(dir: &Path) -> String {
    for (name, body) in [
        ("poweroff", "#!/bin/sh\necho POWEROFF \"$@\"\nexit 0\n"),
        ("sleep", "#!/bin/sh\nexit 0\n"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn check_cmdline(cmdline: &str) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cmdline");
    std::fs::write(&file, format!("{cmdline}\n")).unwrap();
    Command::new("sh")
        .arg(rpios().join(CMDLINE))
        .env("KEYBOUND_TEST_CMDLINE", &file)
        .env("PATH", fake_tools(tmp.path()))
        .output()
        .unwrap()
}

#[test]
fn cmdline_script_refuses_shell_options_and_passes_a_normal_line() {
    assert!(!Path::new("/conf/initramfs.conf").exists(), "not on a host");
    let normal = "console=serial0,115200 console=tty1 root=/dev/mapper/keybound-root \
                  cryptdevice=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait quiet";
    let out = check_cmdline(normal);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    for bad in [
        "init=/bin/sh",
        "rdinit=/bin/sh",
        "break",
        "break=premount",
        "single",
        "emergency",
        "systemd.unit=rescue.target",
    ] {
        let out = check_cmdline(&format!("{normal} {bad}"));
        assert!(!out.status.success(), "{bad} accepted");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.trim(),
            format!("keybound: sealed: refusing {bad} on the kernel command line"),
            "{bad}"
        );
        assert!(
            !text.contains("POWEROFF"),
            "powered off outside an initramfs"
        );
    }
    // Options that merely contain the words are not refused.
    let out = check_cmdline(&format!("{normal} noinit=1 breakfast=yes"));
    assert!(out.status.success(), "{out:?}");
}

/// The functions the hook appends to the initramfs's scripts/functions.
fn hook_functions() -> String {
    let hook = std::fs::read_to_string(rpios().join(HOOK)).unwrap();
    let start = hook.find("<<'FUNCTIONS'\n").unwrap() + "<<'FUNCTIONS'\n".len();
    let end = hook[start..].find("\nFUNCTIONS\n").unwrap() + start;
    hook[start..end].to_string()
}

fn run_functions(script: &str) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    // poweroff returns in the fake: the functions must then hang rather than return to a
    // shell; `sleep` is shadowed by a function that exits so the test ends.
    let prelude = "poweroff() { echo POWEROFF \"$@\"; }\nsleep() { if [ \"$1\" = 60 ]; then echo HELD; exit 7; fi; }\n";
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{prelude}{}\n{script}\necho RETURNED\n",
            hook_functions()
        ))
        .env("PATH", fake_tools(tmp.path()))
        .output()
        .unwrap()
}

#[test]
fn hook_turns_break_and_panic_into_power_off() {
    let out = run_functions("break=premount\nmaybe_break top\nmaybe_break premount");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "keybound: sealed: refusing break=premount on the kernel command line",
            "POWEROFF -f",
            "HELD"
        ]
    );
    let out = run_functions("break=\nmaybe_break premount");
    assert!(String::from_utf8_lossy(&out.stdout).contains("RETURNED"));
    let out = run_functions("panic \"cryptsetup failed\"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert!(
        text.starts_with("keybound: sealed: cryptsetup failed\nPOWEROFF -f\nHELD"),
        "{text}"
    );
}
