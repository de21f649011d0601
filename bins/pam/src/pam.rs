//! The libpam boundary: the exported `pam_sm_*` functions and the conversation. Declared by
//! hand from `<security/pam_modules.h>` (Linux-PAM, BSD-3-Clause or GPL at the user's choice;
//! we only link to it). No panic crosses this boundary: every entry point runs under
//! `catch_unwind` and fails closed with PAM_AUTH_ERR.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use zeroize::Zeroizing;

use crate::auth::{AuthOutcome, Authenticator, ConvError, Conversation};
use crate::fido::DeviceSource;
use crate::log::Logger;
use crate::options::{OptionError, Options};
use crate::safe_file::{self, SafeFileError};

const PAM_SUCCESS: c_int = 0;
const PAM_AUTH_ERR: c_int = 7;
const PAM_IGNORE: c_int = 25;
const PAM_CONV: c_int = 5;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_SILENT: c_int = 0x8000;

#[repr(C)]
struct PamHandle {
    _opaque: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char)
    -> c_int;
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
}

struct PamConversation {
    pamh: *mut PamHandle,
}

impl PamConversation {
    fn ask(&mut self, style: c_int, text: &str) -> Result<Option<Zeroizing<String>>, ConvError> {
        let mut item: *const c_void = std::ptr::null();
        // SAFETY: pamh is the live handle libpam passed to the entry point.
        if unsafe { pam_get_item(self.pamh, PAM_CONV, &mut item) } != PAM_SUCCESS || item.is_null()
        {
            return Err(ConvError);
        }
        // SAFETY: PAM_CONV items are `struct pam_conv` owned by libpam.
        let conv = unsafe { &*item.cast::<PamConv>() };
        let f = conv.conv.ok_or(ConvError)?;
        let text = CString::new(text).map_err(|_| ConvError)?;
        let msg = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        let mut msgp: *const PamMessage = &msg;
        let mut resp: *mut PamResponse = std::ptr::null_mut();
        // SAFETY: one valid message; libpam's conversation allocates `resp` with malloc.
        let rc = unsafe { f(1, &mut msgp, &mut resp, conv.appdata_ptr) };
        let mut answer = None;
        if !resp.is_null() {
            // SAFETY: resp points to one pam_response allocated by the application.
            let r = unsafe { &mut *resp };
            if !r.resp.is_null() {
                // SAFETY: resp.resp is a NUL-terminated malloc'd string.
                let bytes = unsafe { CStr::from_ptr(r.resp) }.to_bytes();
                answer = Some(Zeroizing::new(String::from_utf8_lossy(bytes).into_owned()));
                let len = bytes.len();
                // SAFETY: wipe then free the application's copy of the secret.
                unsafe {
                    std::ptr::write_bytes(r.resp, 0, len);
                    libc::free(r.resp.cast());
                }
            }
            // SAFETY: the response array was malloc'd by the application.
            unsafe { libc::free(resp.cast()) };
        }
        if rc != PAM_SUCCESS {
            return Err(ConvError);
        }
        Ok(answer)
    }
}

impl Conversation for PamConversation {
    fn info(&mut self, msg: &str) -> Result<(), ConvError> {
        self.ask(PAM_TEXT_INFO, msg).map(|_| ())
    }
    fn error(&mut self, msg: &str) -> Result<(), ConvError> {
        self.ask(PAM_ERROR_MSG, msg).map(|_| ())
    }
    fn secret(&mut self, prompt: &str) -> Result<Zeroizing<String>, ConvError> {
        self.ask(PAM_PROMPT_ECHO_OFF, prompt)?.ok_or(ConvError)
    }
}

fn args(argc: c_int, argv: *const *const c_char) -> Option<Vec<String>> {
    let n = usize::try_from(argc).ok()?;
    if n > 0 && argv.is_null() {
        return None;
    }
    (0..n)
        .map(|i| {
            // SAFETY: libpam passes argc valid NUL-terminated strings.
            let p = unsafe { *argv.add(i) };
            if p.is_null() {
                return None;
            }
            // SAFETY: non-null, NUL-terminated (above).
            unsafe { CStr::from_ptr(p) }
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect()
}

fn read_conf(path: &std::path::Path) -> Result<Option<String>, String> {
    match safe_file::read_text(path, &[0], 64 * 1024) {
        Ok(t) => Ok(Some(t)),
        Err(SafeFileError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let boot_log = Logger::syslog(None);
    let Some(args) = args(argc, argv) else {
        boot_log.error("module arguments are not UTF-8");
        return PAM_AUTH_ERR;
    };
    let opts = match Options::parse(&args, read_conf) {
        Ok(o) => o,
        Err(e) => {
            let what = match e {
                OptionError::Refused { .. } => "refused option",
                _ => "bad configuration",
            };
            boot_log.error(&format!("{what}: {e}; authentication fails"));
            return PAM_AUTH_ERR;
        }
    };
    let log = Logger::syslog(opts.debug.then(|| opts.debug_file.clone()));
    let mut user: *const c_char = std::ptr::null();
    // SAFETY: pamh is live; user is a valid out-pointer; NULL prompt = libpam's default.
    if unsafe { pam_get_user(pamh, &mut user, std::ptr::null()) } != PAM_SUCCESS || user.is_null() {
        log.error("no user name");
        return PAM_AUTH_ERR;
    }
    // SAFETY: libpam returns a NUL-terminated string it owns.
    let Ok(user) = unsafe { CStr::from_ptr(user) }.to_str().map(str::to_owned) else {
        log.error("user name is not UTF-8");
        return PAM_AUTH_ERR;
    };
    let flow =
        Authenticator::new(opts, DeviceSource::Hid, log.clone()).silent(flags & PAM_SILENT != 0);
    match flow.authenticate(&user, &mut PamConversation { pamh }) {
        AuthOutcome::Success => PAM_SUCCESS,
        AuthOutcome::Ignore => PAM_IGNORE,
        AuthOutcome::Denied(why) => {
            log.info(&format!("user {user}: denied: {why}"));
            log.debug(&format!("user {user}: denied: {why}"));
            PAM_AUTH_ERR
        }
    }
}

fn guarded(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Logger::syslog(None).error("internal error (panic caught); authentication fails");
        PAM_AUTH_ERR
    })
}

/// PAM `auth` entry point.
///
/// # Safety
/// Called by libpam with a live handle and `argc` valid argument strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut c_void,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guarded(|| authenticate(pamh.cast(), flags, argc, argv))
}

/// PAM `setcred`: nothing to set (pam_u2f returns success too).
///
/// # Safety
/// Called by libpam.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut c_void,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_SUCCESS
}

/// PAM `account`: not this module's job.
///
/// # Safety
/// Called by libpam.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    _pamh: *mut c_void,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// PAM `session` open: not this module's job.
///
/// # Safety
/// Called by libpam.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_open_session(
    _pamh: *mut c_void,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// PAM `session` close: not this module's job.
///
/// # Safety
/// Called by libpam.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_close_session(
    _pamh: *mut c_void,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// PAM `password`: tokens are enrolled with `keybound token enroll`, not here.
///
/// # Safety
/// Called by libpam.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_chauthtok(
    _pamh: *mut c_void,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}
