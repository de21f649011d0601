//! The built `pam_keybound.so` loaded by Linux-PAM itself (`pam_start_confdir`, a temporary
//! pam.d naming the module by absolute path) with a fake conversation that counts its calls.
//! The host has no FIDO device, so these are the "no token" paths.

mod libpam;

use libpam::{PAM_AUTH_ERR, PAM_SUCCESS, authenticate, module_path};
use std::ffi::{c_char, c_int, c_void};
use std::os::unix::fs::PermissionsExt;

fn whoami() -> String {
    // SAFETY: getpwuid on our own uid; the string is copied at once.
    unsafe {
        let pw = libc_getpwuid(geteuid());
        assert!(!pw.is_null());
        std::ffi::CStr::from_ptr(*(pw as *const *const c_char))
            .to_str()
            .unwrap()
            .to_owned()
    }
}

unsafe extern "C" {
    fn geteuid() -> u32;
    #[link_name = "getpwuid"]
    fn libc_getpwuid(uid: u32) -> *const c_void;
}

/// Runs pam_authenticate for a one-line auth stack; returns (result, conversation calls).
fn run_stack(module_args: &str) -> (c_int, usize) {
    run_stack_with(module_args, "")
}

/// Like [`run_stack`], with more lines after the module's.
fn run_stack_with(module_args: &str, more: &str) -> (c_int, usize) {
    let dir = tempfile::tempdir().unwrap();
    let user = whoami();
    let authfile = dir.path().join("u2f_keys");
    // A syntactically valid credential for the user (no device holds it).
    std::fs::write(
        &authfile,
        format!(
            "{user}:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,{},es256,+presence\n",
            base64_64()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The line must be valid, or "no token" would really be "malformed authfile".
    let text = std::fs::read_to_string(&authfile).unwrap();
    assert!(matches!(
        pam_keybound::authfile::find_user(&text, &user),
        Ok(Some(_))
    ));
    let confdir = dir.path().join("pam.d");
    std::fs::create_dir(&confdir).unwrap();
    let args = module_args
        .replace("AUTHFILE", authfile.to_str().unwrap())
        .replace("STATE", dir.path().join("counters").to_str().unwrap());
    std::fs::write(
        confdir.join("keybound-test"),
        format!("auth required {} {args}\n{more}", module_path().display()),
    )
    .unwrap();
    authenticate(&confdir, "keybound-test", &user)
}

fn base64_64() -> String {
    // 64 bytes of 0x01 in standard base64 (an es256 x‖y; not on the curve, never verified here).
    "AQ".repeat(42) + "AQ=="
}

#[test]
fn no_token_is_auth_err_and_the_conversation_is_never_called() {
    let (rc, calls) = run_stack("authfile=AUTHFILE state=STATE origin=pam://t cue timeout=2");
    assert_eq!(rc, PAM_AUTH_ERR);
    assert_eq!(calls, 0);
}

#[test]
fn unknown_or_refused_option_is_auth_err() {
    for args in [
        "authfile=AUTHFILE state=STATE bogus_option",
        "authfile=AUTHFILE state=STATE interactive",
        "authfile=AUTHFILE state=STATE manual",
        "authfile=AUTHFILE state=STATE timeout=0",
        "authfile=AUTHFILE state=STATE conf=/nonexistent/keybound.conf",
    ] {
        let (rc, calls) = run_stack(args);
        assert_eq!(rc, PAM_AUTH_ERR, "{args}");
        assert_eq!(calls, 0, "{args}");
    }
}

#[test]
fn nouserok_ignores_only_users_without_credentials() {
    // Positive control that the module is loaded and runs: a missing per-user authfile (relative
    // path = from home) means "no credentials"; with nouserok the module returns PAM_IGNORE and
    // pam_permit decides the stack.
    let permit = "auth optional pam_permit.so\n";
    let (rc, calls) = run_stack_with(
        "authfile=.keybound-none/u2f_keys state=STATE nouserok",
        permit,
    );
    assert_eq!(rc, PAM_SUCCESS);
    assert_eq!(calls, 0);
    // Without nouserok the same user fails, pam_permit or not.
    let (rc, _) = run_stack_with("authfile=.keybound-none/u2f_keys state=STATE", permit);
    assert_eq!(rc, PAM_AUTH_ERR);
    // A missing shared (absolute, unexpanded) authfile is an error, never "no credentials".
    let (rc, calls) = run_stack_with(
        "authfile=/nonexistent-dir/keys state=STATE nouserok",
        permit,
    );
    assert_eq!(rc, PAM_AUTH_ERR);
    assert_eq!(calls, 0);
}
