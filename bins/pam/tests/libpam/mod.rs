//! A minimal Linux-PAM client for the tests and the bench: `pam_authenticate` for a service in a
//! private pam.d directory (`pam_start_confdir`), with a conversation that answers nothing and
//! counts how often it was called.
#![allow(dead_code, unreachable_pub)]

use std::ffi::{CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `PAM_SUCCESS`.
pub const PAM_SUCCESS: c_int = 0;
/// `PAM_AUTH_ERR`.
pub const PAM_AUTH_ERR: c_int = 7;
/// `PAM_CONV_ERR`: what the conversation answers.
const PAM_CONV_ERR: c_int = 19;

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
    // SAFETY: appdata is the AtomicUsize `authenticate` passed to pam_start_confdir.
    let calls = unsafe { &*appdata.cast::<AtomicUsize>() };
    calls.fetch_add(1, Ordering::SeqCst);
    // SAFETY: resp is a valid out-pointer from libpam.
    unsafe { *resp = std::ptr::null_mut() };
    PAM_CONV_ERR
}

/// The built `libpam_keybound.so` next to the test or bench binary.
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps, deps.parent().unwrap()]
        .iter()
        .map(|d| d.join("libpam_keybound.so"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libpam_keybound.so not found next to {}", exe.display()))
}

/// Runs `pam_authenticate` for `user` with service `service` from `confdir`; returns the result
/// and how many times the conversation was called.
pub fn authenticate(confdir: &Path, service: &str, user: &str) -> (c_int, usize) {
    let calls = Box::new(AtomicUsize::new(0));
    let conv = PamConv {
        conv: counting_conv,
        appdata_ptr: (&*calls as *const AtomicUsize).cast_mut().cast(),
    };
    let service = CString::new(service).unwrap();
    let user = CString::new(user).unwrap();
    let dir = CString::new(confdir.to_str().unwrap()).unwrap();
    let mut pamh: *mut c_void = std::ptr::null_mut();
    // SAFETY: the strings and conv outlive the handle; pamh is an out-pointer.
    let rc = unsafe {
        pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            dir.as_ptr(),
            &mut pamh,
        )
    };
    assert_eq!(rc, PAM_SUCCESS, "pam_start_confdir");
    // SAFETY: pamh is the live handle from pam_start_confdir.
    let result = unsafe { pam_authenticate(pamh, 0) };
    // SAFETY: ends the handle once.
    unsafe { pam_end(pamh, result) };
    (result, calls.load(Ordering::SeqCst))
}
