//! The shipped `fixtures/guest/pam/sshd` and `login` auth stacks, run by Linux-PAM with only
//! four substitutions: pam_unix → pam_permit ("right password") or pam_deny ("wrong password"),
//! pam_keybound.so → the built module (plus test authfile/state and a debug file that shows
//! whether it ran), pam_faillock's tally directory → a temp dir (and its failure delay off), and
//! login's pam_faildelay → 0. Checks the control flags:
//! a wrong password ends the stack before the token module; a locked account looks like a wrong
//! password; a right password without a token is denied with no conversation at all.

mod libpam;

use libpam::{PAM_AUTH_ERR, authenticate, module_path};
use std::ffi::c_int;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn shipped(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/guest/pam")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

struct Stack {
    dir: tempfile::TempDir,
}

impl Stack {
    fn new(file: &str, password_right: bool, user: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let authfile = dir.path().join("u2f_keys");
        std::fs::write(
            &authfile,
            format!(
                "{user}:AQIDBAUGBwgJCgsMDQ4PEA==,{},es256,+presence\n",
                "AQ".repeat(42) + "AQ=="
            ),
        )
        .unwrap();
        std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        let tally = dir.path().join("faillock");
        std::fs::create_dir(&tally).unwrap();
        let text = shipped(file);
        // Only the auth lines: pam_authenticate runs nothing else.
        let auth: String = text
            .lines()
            .filter(|l| l.starts_with("auth"))
            .map(|l| {
                let l = l
                    .replace(
                        "pam_unix.so",
                        if password_right {
                            "pam_permit.so"
                        } else {
                            "pam_deny.so"
                        },
                    )
                    // Not under test, and 3 s per failure: the delay only.
                    .replace("pam_faildelay.so delay=3000000", "pam_faildelay.so delay=0")
                    .replace(
                        "pam_keybound.so authfile=/etc/keybound/u2f_keys",
                        &format!(
                            "{} authfile={} state={} debug debug_file={}",
                            module_path().display(),
                            authfile.display(),
                            dir.path().join("counters").display(),
                            dir.path().join("debug.log").display(),
                        ),
                    );
                let l = if l.contains("pam_faillock.so") {
                    // Its ~2 s failure delay is not under test either.
                    format!("{l} dir={} nodelay", tally.display())
                } else {
                    l
                };
                l + "\n"
            })
            .collect();
        assert!(auth.contains("libpam_keybound.so"), "{auth}");
        std::fs::create_dir(dir.path().join("pam.d")).unwrap();
        std::fs::write(dir.path().join("pam.d/shipped"), auth).unwrap();
        Self { dir }
    }

    /// (pam_authenticate result, conversation calls, whether pam_keybound ran).
    fn run(&self, user: &str) -> (c_int, usize, bool) {
        let _ = std::fs::remove_file(self.dir.path().join("debug.log"));
        let (result, calls) = authenticate(&self.dir.path().join("pam.d"), "shipped", user);
        let ran = std::fs::read_to_string(self.dir.path().join("debug.log"))
            .map(|t| t.contains("probing"))
            .unwrap_or(false);
        (result, calls, ran)
    }
}

#[test]
fn wrong_password_ends_the_stack_before_the_token_module() {
    for file in ["sshd", "login"] {
        let s = Stack::new(file, false, "nobody");
        assert_eq!(s.run("nobody"), (PAM_AUTH_ERR, 0, false), "{file}");
    }
}

#[test]
fn right_password_without_token_is_denied_silently_after_the_probe() {
    for file in ["sshd", "login"] {
        let s = Stack::new(file, true, "nobody");
        assert_eq!(s.run("nobody"), (PAM_AUTH_ERR, 0, true), "{file}");
    }
}

#[test]
fn locked_account_looks_like_a_wrong_password() {
    for file in ["sshd", "login"] {
        let wrong = Stack::new(file, false, "nobody");
        for _ in 0..5 {
            assert_eq!(wrong.run("nobody").0, PAM_AUTH_ERR);
        }
        // Same tally directory, now with the right password: locked, so the stack ends at
        // preauth — no token probe, no conversation, the same result as a wrong password.
        let right = Stack::new(file, true, "nobody");
        std::fs::remove_dir_all(right.dir.path().join("faillock")).unwrap();
        copy_dir(
            &wrong.dir.path().join("faillock"),
            &right.dir.path().join("faillock"),
        );
        assert_eq!(right.run("nobody"), (PAM_AUTH_ERR, 0, false), "{file}");
        // Control: with a fresh tally the same stack does reach the token module.
        let fresh = Stack::new(file, true, "nobody");
        assert_eq!(fresh.run("nobody"), (PAM_AUTH_ERR, 0, true), "{file}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
