//! libfido2 behind a small safe API: the client stack OpenSSH, systemd and pam_u2f use, so the
//! device path (hidraw discovery on the FIDO usage page, CTAPHID, CTAP2 with U2F fallback, PIN
//! protocols) is the one users already trust. Everything it returns is still checked by
//! [`crate::verify`].

mod ffi;
mod unix_io;

use std::ffi::{CStr, CString, c_int};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use ffi::*;

/// A libfido2 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FidoError(pub i32);

impl std::fmt::Display for FidoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: fido_strerr returns a pointer to a static string for any code.
        let s = unsafe { CStr::from_ptr(fido_strerr(self.0)) };
        write!(f, "{} ({})", s.to_string_lossy(), self.0)
    }
}

impl std::error::Error for FidoError {}

impl FidoError {
    /// libfido2's "user presence required" (a U2F token holds the key handle).
    pub fn is_presence_required(self) -> bool {
        self.0 == FIDO_ERR_USER_PRESENCE_REQUIRED
    }
}

fn check(rc: c_int) -> Result<(), FidoError> {
    if rc == FIDO_OK {
        Ok(())
    } else {
        Err(FidoError(rc))
    }
}

fn init() {
    static INIT: Once = Once::new();
    // SAFETY: fido_init only sets global flags; Once makes it run once.
    INIT.call_once(|| unsafe { fido_init(0) });
}

/// A tri-state option of a CTAP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    /// Leave it to the authenticator.
    Omit,
    /// Explicitly false.
    False,
    /// Explicitly true.
    True,
}

impl Opt {
    fn raw(self) -> fido_opt_t {
        match self {
            Opt::Omit => FIDO_OPT_OMIT,
            Opt::False => FIDO_OPT_FALSE,
            Opt::True => FIDO_OPT_TRUE,
        }
    }
}

/// Where devices come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSource {
    /// /dev/hidraw* on the FIDO usage page, via `fido_dev_info_manifest` (production).
    Hid,
    /// Raw CTAPHID unix sockets (virtual-fido; tests and benches only, never from PAM options).
    RawSockets(Vec<PathBuf>),
}

impl DeviceSource {
    /// Paths of up to `max` devices present now.
    pub fn paths(&self, max: usize) -> Result<Vec<CString>, FidoError> {
        match self {
            DeviceSource::Hid => hid_manifest(max),
            DeviceSource::RawSockets(paths) => Ok(paths
                .iter()
                .filter(|p| p.exists())
                .take(max)
                .filter_map(|p| CString::new(p.as_os_str().as_encoded_bytes()).ok())
                .collect()),
        }
    }

    /// Opens the device at `path` (from [`DeviceSource::paths`]) with `timeout` on every wait.
    pub fn open(&self, path: &CStr, timeout: Option<Duration>) -> Result<Device, FidoError> {
        Device::open(path, matches!(self, DeviceSource::RawSockets(_)), timeout)
    }
}

fn hid_manifest(max: usize) -> Result<Vec<CString>, FidoError> {
    init();
    let max = max.max(1);
    // SAFETY: allocates `max` entries; freed below with the same count.
    let mut list = unsafe { fido_dev_info_new(max) };
    if list.is_null() {
        return Err(FidoError(-9));
    }
    let mut found = 0usize;
    // SAFETY: list has `max` entries; found is a valid out-pointer.
    let rc = unsafe { fido_dev_info_manifest(list, max, &mut found) };
    let mut paths = Vec::new();
    if rc == FIDO_OK {
        for i in 0..found.min(max) {
            // SAFETY: i < found <= max entries were filled by the manifest.
            let path = unsafe { fido_dev_info_path(fido_dev_info_ptr(list, i)) };
            if !path.is_null() {
                // SAFETY: a non-null path is a NUL-terminated string owned by `list`.
                paths.push(unsafe { CStr::from_ptr(path) }.to_owned());
            }
        }
    }
    // SAFETY: list came from fido_dev_info_new(max).
    unsafe { fido_dev_info_free(&mut list, max) };
    check(rc).map(|()| paths)
}

/// An open device; closed and freed on drop.
pub struct Device {
    dev: *mut fido_dev_t,
}

/// What a getAssertion asks for.
#[derive(Debug, Clone)]
pub struct AssertRequest<'a> {
    /// Relying party id.
    pub rp_id: &'a str,
    /// The client-data hash (a fresh random challenge).
    pub client_data_hash: [u8; 32],
    /// The credential id, or `None` for resident credentials.
    pub allow: Option<&'a [u8]>,
    /// User presence.
    pub up: Opt,
    /// User verification.
    pub uv: Opt,
}

/// One assertion as returned (untrusted).
#[derive(Debug, Clone)]
pub struct AssertionOut {
    /// Authenticator data, CBOR byte-string wrapped (as libfido2 keeps it).
    pub auth_data_cbor: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
    /// The credential id.
    pub credential_id: Vec<u8>,
}

/// What a makeCredential asks for.
#[derive(Debug, Clone)]
pub struct MakeCredRequest<'a> {
    /// Relying party id (the origin).
    pub rp_id: &'a str,
    /// Relying party name (pamu2fcfg passes the appid).
    pub rp_name: &'a str,
    /// User name.
    pub user: &'a str,
    /// Random user handle.
    pub user_id: [u8; 32],
    /// Client-data hash.
    pub client_data_hash: [u8; 32],
    /// EdDSA instead of ES256.
    pub eddsa: bool,
    /// Resident (discoverable) credential.
    pub resident: bool,
    /// Ask for user verification.
    pub uv: Opt,
}

/// A credential as made (untrusted until checked).
#[derive(Debug, Clone)]
pub struct MadeCredential {
    /// Credential id.
    pub id: Vec<u8>,
    /// Public key bytes (es256: 64-byte x‖y; eddsa: 32 bytes).
    pub public_key: Vec<u8>,
    /// Raw authenticator data.
    pub auth_data: Vec<u8>,
}

fn copy(ptr: *const u8, len: usize, limit: usize) -> Option<Vec<u8>> {
    if ptr.is_null() || len > limit {
        return None;
    }
    // SAFETY: libfido2 returns a pointer to `len` bytes owned by the live object.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}

struct Assert(*mut fido_assert_t);
impl Drop for Assert {
    fn drop(&mut self) {
        // SAFETY: self.0 came from fido_assert_new and is freed once.
        unsafe { fido_assert_free(&mut self.0) };
    }
}

struct Cred(*mut fido_cred_t);
impl Drop for Cred {
    fn drop(&mut self) {
        // SAFETY: self.0 came from fido_cred_new and is freed once.
        unsafe { fido_cred_free(&mut self.0) };
    }
}

fn timeout_ms(timeout: Option<Duration>) -> c_int {
    match timeout {
        None => -1,
        Some(t) => c_int::try_from(t.as_millis()).unwrap_or(c_int::MAX).max(1),
    }
}

impl Device {
    fn open(path: &CStr, raw_socket: bool, timeout: Option<Duration>) -> Result<Self, FidoError> {
        init();
        // SAFETY: plain allocation; null checked.
        let dev = unsafe { fido_dev_new() };
        if dev.is_null() {
            return Err(FidoError(-9));
        }
        let mut this = Device { dev };
        if raw_socket {
            let io = unix_io::io_table();
            // SAFETY: dev is valid; libfido2 copies the table.
            check(unsafe { fido_dev_set_io_functions(this.dev, &io) })?;
        }
        this.set_timeout(timeout)?;
        // SAFETY: dev is valid and not yet open; path is NUL-terminated.
        let rc = unsafe { fido_dev_open(this.dev, path.as_ptr()) };
        if rc != FIDO_OK {
            // Not open: free without close.
            // SAFETY: dev came from fido_dev_new.
            unsafe { fido_dev_free(&mut this.dev) };
            this.dev = std::ptr::null_mut();
            return Err(FidoError(rc));
        }
        Ok(this)
    }

    /// Bounds every following wait by `timeout` (`None`: the token's own, possibly forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), FidoError> {
        // SAFETY: dev is valid.
        check(unsafe { fido_dev_set_timeout(self.dev, timeout_ms(timeout)) })
    }

    /// Whether the device speaks CTAP2 (otherwise U2F only).
    pub fn is_fido2(&self) -> bool {
        // SAFETY: dev is valid and open.
        unsafe { fido_dev_is_fido2(self.dev) }
    }

    /// Runs getAssertion (U2F authenticate for U2F-only devices, by libfido2's fallback).
    pub fn get_assert(
        &mut self,
        req: &AssertRequest<'_>,
        pin: Option<&CStr>,
    ) -> Result<Vec<AssertionOut>, FidoError> {
        let rp = CString::new(req.rp_id).map_err(|_| FidoError(-7))?;
        // SAFETY: plain allocation; null checked.
        let a = Assert(unsafe { fido_assert_new() });
        if a.0.is_null() {
            return Err(FidoError(-9));
        }
        // SAFETY: a.0 is valid; pointers and lengths describe live buffers.
        unsafe {
            check(fido_assert_set_clientdata_hash(
                a.0,
                req.client_data_hash.as_ptr(),
                32,
            ))?;
            check(fido_assert_set_rp(a.0, rp.as_ptr()))?;
            if let Some(id) = req.allow {
                check(fido_assert_allow_cred(a.0, id.as_ptr(), id.len()))?;
            }
            check(fido_assert_set_up(a.0, req.up.raw()))?;
            check(fido_assert_set_uv(a.0, req.uv.raw()))?;
        }
        let pin_ptr = pin.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: dev and a.0 are valid; pin is null or NUL-terminated.
        check(unsafe { fido_dev_get_assert(self.dev, a.0, pin_ptr) })?;
        // SAFETY: a.0 is valid.
        let count = unsafe { fido_assert_count(a.0) }.min(16);
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: i < count; each ptr/len pair comes from the same live assertion.
            let (ad, sig, id) = unsafe {
                (
                    copy(
                        fido_assert_authdata_ptr(a.0, i),
                        fido_assert_authdata_len(a.0, i),
                        2048,
                    ),
                    copy(
                        fido_assert_sig_ptr(a.0, i),
                        fido_assert_sig_len(a.0, i),
                        512,
                    ),
                    copy(fido_assert_id_ptr(a.0, i), fido_assert_id_len(a.0, i), 1023),
                )
            };
            if let (Some(auth_data_cbor), Some(signature), Some(credential_id)) = (ad, sig, id) {
                out.push(AssertionOut {
                    auth_data_cbor,
                    signature,
                    credential_id,
                });
            }
        }
        Ok(out)
    }

    /// Sets the token PIN (`old` = the current one, when changing it).
    pub fn set_pin(&mut self, pin: &CStr, old: Option<&CStr>) -> Result<(), FidoError> {
        let old = old.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: dev is valid and open; both strings are NUL-terminated or null.
        check(unsafe { fido_dev_set_pin(self.dev, pin.as_ptr(), old) })
    }

    /// Runs makeCredential (U2F register for U2F-only devices).
    pub fn make_cred(
        &mut self,
        req: &MakeCredRequest<'_>,
        pin: Option<&CStr>,
    ) -> Result<MadeCredential, FidoError> {
        let rp = CString::new(req.rp_id).map_err(|_| FidoError(-7))?;
        let rp_name = CString::new(req.rp_name).map_err(|_| FidoError(-7))?;
        let user = CString::new(req.user).map_err(|_| FidoError(-7))?;
        // SAFETY: plain allocation; null checked.
        let c = Cred(unsafe { fido_cred_new() });
        if c.0.is_null() {
            return Err(FidoError(-9));
        }
        // SAFETY: c.0 is valid; pointers and lengths describe live buffers.
        unsafe {
            check(fido_cred_set_type(
                c.0,
                if req.eddsa { COSE_EDDSA } else { COSE_ES256 },
            ))?;
            check(fido_cred_set_clientdata_hash(
                c.0,
                req.client_data_hash.as_ptr(),
                32,
            ))?;
            check(fido_cred_set_rp(c.0, rp.as_ptr(), rp_name.as_ptr()))?;
            check(fido_cred_set_user(
                c.0,
                req.user_id.as_ptr(),
                req.user_id.len(),
                user.as_ptr(),
                user.as_ptr(),
                std::ptr::null(),
            ))?;
            check(fido_cred_set_rk(
                c.0,
                if req.resident {
                    FIDO_OPT_TRUE
                } else {
                    FIDO_OPT_OMIT
                },
            ))?;
            check(fido_cred_set_uv(c.0, req.uv.raw()))?;
        }
        let pin_ptr = pin.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: dev and c.0 are valid; pin is null or NUL-terminated.
        check(unsafe { fido_dev_make_cred(self.dev, c.0, pin_ptr) })?;
        // SAFETY: each ptr/len pair comes from the same live credential.
        let (id, pk, ad) = unsafe {
            (
                copy(fido_cred_id_ptr(c.0), fido_cred_id_len(c.0), 1023),
                copy(fido_cred_pubkey_ptr(c.0), fido_cred_pubkey_len(c.0), 1024),
                copy(
                    fido_cred_authdata_raw_ptr(c.0),
                    fido_cred_authdata_raw_len(c.0),
                    4096,
                ),
            )
        };
        match (id, pk, ad) {
            (Some(id), Some(public_key), Some(auth_data))
                if !id.is_empty() && auth_data.len() >= 37 =>
            {
                Ok(MadeCredential {
                    id,
                    public_key,
                    auth_data,
                })
            }
            _ => Err(FidoError(-7)),
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if !self.dev.is_null() {
            // SAFETY: dev is valid and open; closed then freed exactly once.
            unsafe {
                fido_dev_close(self.dev);
                fido_dev_free(&mut self.dev);
            }
        }
    }
}
