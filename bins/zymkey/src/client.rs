//! An open Zymkey context and its safe wrappers.

use std::ffi::{CString, c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::library::{Api, Library};
use crate::types::{
    AxisReading, AxisSelect, BindingInfo, LockKey, PerimeterActions, PerimeterChannel, RawAxis,
    Slot,
};

/// An open Zymkey context (`zkOpen` … `zkClose`).
pub struct Zymkey {
    lib: Library,
    ctx: *mut c_void,
}

// SAFETY: a zkCTX is an opaque handle the library accepts from any thread; `Zymkey` is not
// `Sync`, so calls on one context never run concurrently.
unsafe impl Send for Zymkey {}

impl std::fmt::Debug for Zymkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Zymkey(..)")
    }
}

fn check(rc: c_int) -> Result<c_int> {
    if rc < 0 {
        Err(Error::from_code(rc))
    } else {
        Ok(rc)
    }
}

fn path_arg(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::InvalidArgument)
}

fn len_arg(len: usize) -> Result<c_int> {
    c_int::try_from(len).map_err(|_| Error::InvalidArgument)
}

/// Takes ownership of a `malloc`ed buffer from the library: copies it, wipes it, frees it.
///
/// # Safety
/// `ptr` is null or a `malloc`ed buffer of at least `len` bytes that nothing else frees.
unsafe fn take_buffer(ptr: *mut u8, len: c_int) -> Result<Zeroizing<Vec<u8>>> {
    if ptr.is_null() {
        return Err(Error::Protocol);
    }
    let len = usize::try_from(len).unwrap_or(0);
    // SAFETY: per this function's contract the buffer holds `len` bytes and is ours to free.
    unsafe {
        let out = Zeroizing::new(std::slice::from_raw_parts(ptr, len).to_vec());
        for i in 0..len {
            std::ptr::write_volatile(ptr.add(i), 0);
        }
        libc::free(ptr.cast());
        Ok(out)
    }
}

impl Zymkey {
    /// Opens a context on the module (fails with [`Error::ModuleAbsent`] if there is none).
    pub fn open(lib: &Library) -> Result<Self> {
        let open = lib.api.open.ok_or(Error::MissingFunction("zkOpen"))?;
        let mut ctx: *mut c_void = std::ptr::null_mut();
        // SAFETY: zkOpen writes one context pointer to a valid location.
        check(unsafe { open(&mut ctx) })?;
        if ctx.is_null() {
            return Err(Error::Protocol);
        }
        Ok(Self {
            lib: lib.clone(),
            ctx,
        })
    }

    fn api(&self) -> &Api {
        &self.lib.api
    }

    fn bytes_out(
        &self,
        call: impl FnOnce(*mut c_void, *mut *mut u8, *mut c_int) -> c_int,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let mut ptr: *mut u8 = std::ptr::null_mut();
        let mut len: c_int = 0;
        check(call(self.ctx, &mut ptr, &mut len))?;
        // SAFETY: on success the library handed us a malloc'ed buffer of `len` bytes.
        unsafe { take_buffer(ptr, len) }
    }

    fn text_out(
        &self,
        f: Option<unsafe extern "C" fn(*mut c_void, *mut *mut c_char) -> c_int>,
        name: &'static str,
    ) -> Result<String> {
        let f = f.ok_or(Error::MissingFunction(name))?;
        let mut ptr: *mut c_char = std::ptr::null_mut();
        // SAFETY: the function writes one malloc'ed NUL-terminated string pointer.
        check(unsafe { f(self.ctx, &mut ptr) })?;
        if ptr.is_null() {
            return Err(Error::Protocol);
        }
        // SAFETY: a NUL-terminated string allocated with malloc, ours to free.
        unsafe {
            let s = std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned();
            libc::free(ptr.cast());
            Ok(s)
        }
    }

    fn simple(
        &self,
        f: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
        name: &'static str,
    ) -> Result<()> {
        let f = f.ok_or(Error::MissingFunction(name))?;
        // SAFETY: a context-only call on our live context.
        check(unsafe { f(self.ctx) }).map(drop)
    }

    /// `n` random bytes from the module's RNG.
    pub fn random_bytes(&self, n: usize) -> Result<Zeroizing<Vec<u8>>> {
        let f = self
            .api()
            .get_rand_bytes
            .ok_or(Error::MissingFunction("zkGetRandBytes"))?;
        let n = len_arg(n)?;
        // SAFETY: zkGetRandBytes writes a malloc'ed buffer of exactly `n` bytes.
        self.bytes_out(|ctx, out, len| unsafe {
            *len = n;
            f(ctx, out, n)
        })
    }

    /// Writes `n` random bytes to `path`.
    pub fn random_to_file(&self, path: &Path, n: usize) -> Result<()> {
        let f = self
            .api()
            .create_rand_data_file
            .ok_or(Error::MissingFunction("zkCreateRandDataFile"))?;
        let p = path_arg(path)?;
        // SAFETY: a NUL-terminated path and a size.
        check(unsafe { f(self.ctx, p.as_ptr(), len_arg(n)?) }).map(drop)
    }

    /// Locks `data` (encrypt + sign) with the module's key; returns the blob.
    pub fn lock(&self, data: &[u8], key: LockKey) -> Result<Vec<u8>> {
        let f = self
            .api()
            .lock_b2b
            .ok_or(Error::MissingFunction("zkLockDataB2B"))?;
        let n = len_arg(data.len())?;
        // SAFETY: `data` holds `n` bytes; the out-pointers are valid.
        let blob = self.bytes_out(|ctx, out, len| unsafe {
            f(ctx, data.as_ptr(), n, out, len, key.shared())
        })?;
        Ok(blob.to_vec())
    }

    /// Unlocks (verify + decrypt) a blob made by this module.
    pub fn unlock(&self, blob: &[u8], key: LockKey) -> Result<Zeroizing<Vec<u8>>> {
        let f = self
            .api()
            .unlock_b2b
            .ok_or(Error::MissingFunction("zkUnlockDataB2B"))?;
        let n = len_arg(blob.len())?;
        // SAFETY: `blob` holds `n` bytes; the out-pointers are valid.
        self.bytes_out(|ctx, out, len| unsafe { f(ctx, blob.as_ptr(), n, out, len, key.shared()) })
    }

    /// Locks the file `src` into the file `dst`.
    pub fn lock_file_to_file(&self, src: &Path, dst: &Path, key: LockKey) -> Result<()> {
        let f = self
            .api()
            .lock_f2f
            .ok_or(Error::MissingFunction("zkLockDataF2F"))?;
        let (s, d) = (path_arg(src)?, path_arg(dst)?);
        // SAFETY: two NUL-terminated paths.
        check(unsafe { f(self.ctx, s.as_ptr(), d.as_ptr(), key.shared()) }).map(drop)
    }

    /// Locks `data` into the file `dst`.
    pub fn lock_to_file(&self, data: &[u8], dst: &Path, key: LockKey) -> Result<()> {
        let f = self
            .api()
            .lock_b2f
            .ok_or(Error::MissingFunction("zkLockDataB2F"))?;
        let d = path_arg(dst)?;
        // SAFETY: `data` holds the given length; a NUL-terminated path.
        check(unsafe {
            f(
                self.ctx,
                data.as_ptr(),
                len_arg(data.len())?,
                d.as_ptr(),
                key.shared(),
            )
        })
        .map(drop)
    }

    /// Locks the file `src`; returns the blob.
    pub fn lock_file(&self, src: &Path, key: LockKey) -> Result<Vec<u8>> {
        let f = self
            .api()
            .lock_f2b
            .ok_or(Error::MissingFunction("zkLockDataF2B"))?;
        let s = path_arg(src)?;
        // SAFETY: a NUL-terminated path; valid out-pointers.
        let blob =
            self.bytes_out(|ctx, out, len| unsafe { f(ctx, s.as_ptr(), out, len, key.shared()) })?;
        Ok(blob.to_vec())
    }

    /// Unlocks the file `src` into the file `dst`.
    pub fn unlock_file_to_file(&self, src: &Path, dst: &Path, key: LockKey) -> Result<()> {
        let f = self
            .api()
            .unlock_f2f
            .ok_or(Error::MissingFunction("zkUnlockDataF2F"))?;
        let (s, d) = (path_arg(src)?, path_arg(dst)?);
        // SAFETY: two NUL-terminated paths.
        check(unsafe { f(self.ctx, s.as_ptr(), d.as_ptr(), key.shared()) }).map(drop)
    }

    /// Unlocks `blob` into the file `dst`.
    pub fn unlock_to_file(&self, blob: &[u8], dst: &Path, key: LockKey) -> Result<()> {
        let f = self
            .api()
            .unlock_b2f
            .ok_or(Error::MissingFunction("zkUnlockDataB2F"))?;
        let d = path_arg(dst)?;
        // SAFETY: `blob` holds the given length; a NUL-terminated path.
        check(unsafe {
            f(
                self.ctx,
                blob.as_ptr(),
                len_arg(blob.len())?,
                d.as_ptr(),
                key.shared(),
            )
        })
        .map(drop)
    }

    /// Unlocks the file `src`; returns the plaintext.
    pub fn unlock_file(&self, src: &Path, key: LockKey) -> Result<Zeroizing<Vec<u8>>> {
        let f = self
            .api()
            .unlock_f2b
            .ok_or(Error::MissingFunction("zkUnlockDataF2B"))?;
        let s = path_arg(src)?;
        // SAFETY: a NUL-terminated path; valid out-pointers.
        self.bytes_out(|ctx, out, len| unsafe { f(ctx, s.as_ptr(), out, len, key.shared()) })
    }

    /// Signs a SHA-256 digest with the key in `slot`; returns the raw `r || s` signature.
    pub fn sign_digest(&self, slot: Slot, digest: &[u8; 32]) -> Result<Vec<u8>> {
        let f = self
            .api()
            .gen_sig
            .ok_or(Error::MissingFunction("zkGenECDSASigFromDigest"))?;
        // SAFETY: a 32-byte digest; valid out-pointers.
        let sig = self
            .bytes_out(|ctx, out, len| unsafe { f(ctx, digest.as_ptr(), slot.raw(), out, len) })?;
        Ok(sig.to_vec())
    }

    /// Verifies a signature over a digest with the key in `slot`.
    pub fn verify_digest(&self, slot: Slot, digest: &[u8; 32], sig: &[u8]) -> Result<bool> {
        let f = self
            .api()
            .verify_sig
            .ok_or(Error::MissingFunction("zkVerifyECDSASigFromDigest"))?;
        // SAFETY: a 32-byte digest and a signature of the given length.
        let rc = check(unsafe {
            f(
                self.ctx,
                digest.as_ptr(),
                slot.raw(),
                sig.as_ptr(),
                len_arg(sig.len())?,
            )
        })?;
        Ok(rc == 1)
    }

    /// The public key of `slot` (64 bytes `X || Y` from our library).
    pub fn export_public_key(&self, slot: Slot) -> Result<Vec<u8>> {
        let f = self
            .api()
            .export_pubkey
            .ok_or(Error::MissingFunction("zkExportPubKey"))?;
        // SAFETY: valid out-pointers.
        let pk = self.bytes_out(|ctx, out, len| unsafe { f(ctx, out, len, slot.raw(), false) })?;
        Ok(pk.to_vec())
    }

    /// Sets what a breach on `channel` does.
    pub fn set_perimeter_actions(
        &self,
        channel: PerimeterChannel,
        actions: PerimeterActions,
    ) -> Result<()> {
        let f = self
            .api()
            .set_perimeter_action
            .ok_or(Error::MissingFunction("zkSetPerimeterEventAction"))?;
        // SAFETY: plain values.
        check(unsafe { f(self.ctx, channel as c_int, actions.flags()) }).map(drop)
    }

    /// First-breach time per channel, seconds since the epoch (`None` = no breach).
    pub fn perimeter_first_breaches(&self) -> Result<Vec<Option<u32>>> {
        let f = self
            .api()
            .get_perimeter_info
            .ok_or(Error::MissingFunction("zkGetPerimeterDetectInfo"))?;
        let mut ptr: *mut u32 = std::ptr::null_mut();
        let mut n: c_int = 0;
        // SAFETY: valid out-pointers.
        check(unsafe { f(self.ctx, &mut ptr, &mut n) })?;
        if ptr.is_null() {
            return Err(Error::Protocol);
        }
        let n = usize::try_from(n).unwrap_or(0);
        // SAFETY: a malloc'ed array of `n` u32, ours to free.
        unsafe {
            let out = std::slice::from_raw_parts(ptr, n)
                .iter()
                .map(|&t| (t != 0).then_some(t))
                .collect();
            libc::free(ptr.cast());
            Ok(out)
        }
    }

    /// Clears breach records and rearms both channels.
    pub fn clear_perimeter_events(&self) -> Result<()> {
        self.simple(self.api().clear_perimeter, "zkClearPerimeterDetectEvents")
    }

    fn wait(
        &self,
        f: Option<unsafe extern "C" fn(*mut c_void, u32) -> c_int>,
        name: &'static str,
        timeout: Duration,
    ) -> Result<bool> {
        let f = f.ok_or(Error::MissingFunction(name))?;
        let ms = u32::try_from(timeout.as_millis()).map_err(|_| Error::InvalidArgument)?;
        // SAFETY: plain values.
        match check(unsafe { f(self.ctx, ms) }) {
            Ok(_) => Ok(true),
            Err(Error::TimedOut) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits for a perimeter event; `Ok(false)` on timeout.
    pub fn wait_for_perimeter_event(&self, timeout: Duration) -> Result<bool> {
        self.wait(
            self.api().wait_perimeter,
            "zkWaitForPerimeterEvent",
            timeout,
        )
    }

    /// Sets tap sensitivity, 0–100 %.
    pub fn set_tap_sensitivity(&self, axis: AxisSelect, percent: f32) -> Result<()> {
        let f = self
            .api()
            .set_tap_sensitivity
            .ok_or(Error::MissingFunction("zkSetTapSensitivity"))?;
        // SAFETY: plain values.
        check(unsafe { f(self.ctx, axis as c_int, percent) }).map(drop)
    }

    /// Waits for a tap; `Ok(false)` on timeout.
    pub fn wait_for_tap(&self, timeout: Duration) -> Result<bool> {
        self.wait(self.api().wait_tap, "zkWaitForTap", timeout)
    }

    /// Accelerometer x, y, z.
    pub fn accelerometer(&self) -> Result<[AxisReading; 3]> {
        let f = self
            .api()
            .get_accel
            .ok_or(Error::MissingFunction("zkGetAccelerometerData"))?;
        let mut axes = [RawAxis::default(); 3];
        let [x, y, z] = &mut axes;
        // SAFETY: three valid out-pointers.
        check(unsafe { f(self.ctx, x, y, z) })?;
        Ok(axes.map(|a| AxisReading {
            g: a.g,
            tap_direction: a.tap_direction,
        }))
    }

    /// The module's clock, seconds since the epoch (`precise` waits for the next second).
    pub fn time(&self, precise: bool) -> Result<u32> {
        let f = self
            .api()
            .get_time
            .ok_or(Error::MissingFunction("zkGetTime"))?;
        let mut t = 0u32;
        // SAFETY: a valid out-pointer.
        check(unsafe { f(self.ctx, &mut t, precise) })?;
        Ok(t)
    }

    /// LED on.
    pub fn led_on(&self) -> Result<()> {
        self.simple(self.api().led_on, "zkLEDOn")
    }

    /// LED off.
    pub fn led_off(&self) -> Result<()> {
        self.simple(self.api().led_off, "zkLEDOff")
    }

    /// LED flashing (`count` 0 = forever).
    pub fn led_flash(&self, on: Duration, off: Duration, count: u32) -> Result<()> {
        let f = self
            .api()
            .led_flash
            .ok_or(Error::MissingFunction("zkLEDFlash"))?;
        let ms = |d: Duration| u32::try_from(d.as_millis()).map_err(|_| Error::InvalidArgument);
        // SAFETY: plain values.
        check(unsafe { f(self.ctx, ms(on)?, ms(off)?, count) }).map(drop)
    }

    /// Sets the module's I2C address (0x30–0x37, 0x60–0x67).
    pub fn set_i2c_address(&self, addr: u8) -> Result<()> {
        let f = self
            .api()
            .set_i2c_addr
            .ok_or(Error::MissingFunction("zkSetI2CAddr"))?;
        // SAFETY: a plain value.
        check(unsafe { f(self.ctx, c_int::from(addr)) }).map(drop)
    }

    /// Soft binding lock (HSM modules; a ZYMKEY4 answers [`Error::Unsupported`]).
    pub fn lock_binding(&self) -> Result<()> {
        self.simple(self.api().lock_binding, "zkLockBinding")
    }

    /// Binding state.
    pub fn binding_info(&self) -> Result<BindingInfo> {
        let f = self
            .api()
            .binding_info
            .ok_or(Error::MissingFunction("zkGetCurrentBindingInfo"))?;
        let (mut locked, mut bound) = (false, false);
        // SAFETY: two valid out-pointers.
        check(unsafe { f(self.ctx, &mut locked, &mut bound) })?;
        Ok(BindingInfo { locked, bound })
    }

    /// Model string.
    pub fn model(&self) -> Result<String> {
        self.text_out(self.api().model, "zkGetModelNumberString")
    }

    /// Firmware version string.
    pub fn firmware(&self) -> Result<String> {
        self.text_out(self.api().firmware, "zkGetFirmwareVersionString")
    }

    /// Serial number string.
    pub fn serial(&self) -> Result<String> {
        self.text_out(self.api().serial, "zkGetSerialNumberString")
    }
}

impl Drop for Zymkey {
    fn drop(&mut self) {
        if let Some(close) = self.lib.api.close {
            // SAFETY: our context, closed exactly once.
            unsafe { close(self.ctx) };
        }
    }
}
