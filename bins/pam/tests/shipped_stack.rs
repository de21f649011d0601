//! The shipped `fixtures/guest/pam/sshd` and `login` auth stacks, run by Linux-PAM with only
//! four substitutions: pam_unix → pam_permit ("right password") or pam_deny ("wrong password"),
//! pam_keybound.so → the built module (plus test authfile/state and a debug file that shows
//! whether it ran), pam_faillock's tally directory → a temp dir (and its failure delay off), and
//! login's pam_faildelay → 0. Checks the control flags:
//! a wrong password ends the stack before the token module; a locked account looks like a wrong
//! password; a right password without a token is denied with no conversation at all.

use std::ffi::{CString, c_char, c_int, c_void};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const PAM_SUCCESS: c_int = 0;
const PAM_AUTH_ERR: c_int = 7;

#[repr(C)]
struct PamConv {
    conv: unsafe extern "C" fn(c_int, *mut *const c_void, *mut *mut c_void, *mut c_void) -> c_int,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
}

unsafe extern "C" fn counting_conv(
    _n: c_int,
    _msg: *mut *const c_void,
    resp: *mut *mut c_void,
    appdata: *mut c_void,
) -> c_int {
    // SAFETY: appdata is the AtomicUsize the test passed to pam_start_confdir.
    let calls = unsafe { &*appdata.cast::<AtomicUsize>() };
    calls.fetch_add(1, Ordering::SeqCst);
    // SAFETY: resp is a valid out-pointer from libpam.
    unsafe { *resp = std::ptr::null_mut() };
    19
}

fn module_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps, deps.parent().unwrap()]
        .iter()
        .map(|d| d.join("libpam_keybound.so"))
        .find(|p| p.exists())
        .expect("libpam_keybound.so next to the test binary")
}

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
        let calls = Box::new(AtomicUsize::new(0));
        let conv = PamConv {
            conv: counting_conv,
            appdata_ptr: (&*calls as *const AtomicUsize).cast_mut().cast(),
        };
        let service = CString::new("shipped").unwrap();
        let cuser = CString::new(user).unwrap();
        let cdir = CString::new(self.dir.path().join("pam.d").to_str().unwrap()).unwrap();
        let mut pamh: *mut c_void = std::ptr::null_mut();
        // SAFETY: strings and conv outlive the handle; pamh is an out-pointer.
        let rc = unsafe {
            pam_start_confdir(
                service.as_ptr(),
                cuser.as_ptr(),
                &conv,
                cdir.as_ptr(),
                &mut pamh,
            )
        };
        assert_eq!(rc, PAM_SUCCESS);
        // SAFETY: live handle.
        let result = unsafe { pam_authenticate(pamh, 0) };
        // SAFETY: ends the handle once.
        unsafe { pam_end(pamh, result) };
        let ran = std::fs::read_to_string(self.dir.path().join("debug.log"))
            .map(|t| t.contains("probing"))
            .unwrap_or(false);
        (result, calls.load(Ordering::SeqCst), ran)
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
