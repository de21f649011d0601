//! The exported C functions, with the signatures of Zymbit's `zk_app_utils.h`.
//!
//! # Safety
//! Every function follows the header's contract: `ctx` comes from `zkOpen` and is not used after
//! `zkClose`; input pointers point to at least the given number of readable bytes (a digest to
//! 32); paths are NUL-terminated; output pointers are valid for one write. Buffers returned
//! through `uint8_t**` / `char**` / `uint32_t**` are allocated with `malloc` and the caller
//! releases them with `free`. Null pointers are refused with `ZK_ERR_INVALID`. No panic crosses
//! this boundary: a caught panic returns `ZK_ERR_GENERAL`.
#![allow(non_snake_case, non_camel_case_types, clippy::missing_safety_doc)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::codes::{self, ZK_ERR_INVALID};
use crate::transport::{self, Endpoint};
use crate::wire::{self, Op, Reply};

/// Zymbit's context handle (`typedef void* zkCTX`).
pub type zkCTX = *mut c_void;

/// Zymbit's `zkAccelAxisDataType`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct zkAccelAxisDataType {
    /// The reading in g.
    pub g: f64,
    /// -1, 0 or +1: the direction of the force that caused a tap.
    pub tapDirection: c_int,
}

/// Largest random buffer one call returns (split into wire-sized chunks).
const MAX_RANDOM_TOTAL: usize = 1 << 20;

struct Context {
    endpoint: Endpoint,
}

fn guard(f: impl FnOnce() -> Result<c_int, c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(code)) => code,
        Err(_) => codes::ZK_ERR_GENERAL,
    }
}

unsafe fn context<'a>(ctx: zkCTX) -> Result<&'a Context, c_int> {
    if ctx.is_null() {
        return Err(ZK_ERR_INVALID);
    }
    // SAFETY: per the contract `ctx` came from `zkOpen` (a leaked `Box<Context>`) and is live.
    Ok(unsafe { &*(ctx as *const Context) })
}

fn call(ctx: &Context, op: Op) -> Result<Reply, c_int> {
    transport::call(&ctx.endpoint, op, Duration::ZERO)
}

fn expect_bytes(reply: Reply) -> Result<Zeroizing<Vec<u8>>, c_int> {
    match reply {
        Reply::Bytes(b) => Ok(b),
        _ => Err(codes::ZK_ERR_PROTOCOL),
    }
}

fn expect_done(reply: Reply) -> Result<c_int, c_int> {
    match reply {
        Reply::Done => Ok(codes::ZK_OK),
        _ => Err(codes::ZK_ERR_PROTOCOL),
    }
}

unsafe fn in_bytes<'a>(ptr: *const u8, len: c_int, max: usize) -> Result<&'a [u8], c_int> {
    if ptr.is_null() || len < 0 || len as usize > max {
        return Err(ZK_ERR_INVALID);
    }
    // SAFETY: the caller guarantees `len` readable bytes at `ptr` (checked non-null above).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len as usize) })
}

unsafe fn in_path(ptr: *const c_char) -> Result<PathBuf, c_int> {
    if ptr.is_null() {
        return Err(ZK_ERR_INVALID);
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(ptr) };
    let s = s.to_str().map_err(|_| ZK_ERR_INVALID)?;
    Ok(PathBuf::from(s))
}

/// Copies `data` into a `malloc`ed buffer the caller frees.
fn malloc_copy(data: &[u8], extra_nul: bool) -> Result<*mut u8, c_int> {
    let size = data.len() + usize::from(extra_nul);
    // SAFETY: plain allocation; at least one byte so a successful call never yields NULL.
    let p = unsafe { libc::malloc(size.max(1)) } as *mut u8;
    if p.is_null() {
        return Err(codes::ZK_ERR_NOMEM);
    }
    // SAFETY: `p` has room for `size` bytes and does not overlap `data`.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
        if extra_nul {
            *p.add(data.len()) = 0;
        }
    }
    Ok(p)
}

unsafe fn out_bytes(data: &[u8], dst: *mut *mut u8, dst_sz: *mut c_int) -> Result<c_int, c_int> {
    if dst.is_null() || dst_sz.is_null() {
        return Err(ZK_ERR_INVALID);
    }
    let p = malloc_copy(data, false)?;
    // SAFETY: both out-pointers are valid for one write per the contract (checked non-null).
    unsafe {
        *dst = p;
        *dst_sz = data.len() as c_int;
    }
    Ok(codes::ZK_OK)
}

unsafe fn out_string(text: &str, dst: *mut *mut c_char) -> Result<c_int, c_int> {
    if dst.is_null() {
        return Err(ZK_ERR_INVALID);
    }
    let p = malloc_copy(text.as_bytes(), true)?;
    // SAFETY: `dst` is valid for one write per the contract (checked non-null).
    unsafe { *dst = p as *mut c_char };
    Ok(codes::ZK_OK)
}

fn errno_code(e: &std::io::Error) -> c_int {
    -e.raw_os_error().unwrap_or(libc::EIO)
}

fn read_file(path: &PathBuf, max: usize) -> Result<Zeroizing<Vec<u8>>, c_int> {
    let data = Zeroizing::new(std::fs::read(path).map_err(|e| errno_code(&e))?);
    if data.len() > max {
        return Err(ZK_ERR_INVALID);
    }
    Ok(data)
}

fn write_file(path: &PathBuf, data: &[u8]) -> Result<c_int, c_int> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| errno_code(&e))?;
    f.write_all(data).map_err(|e| errno_code(&e))?;
    f.sync_all().map_err(|e| errno_code(&e))?;
    Ok(codes::ZK_OK)
}

fn random(ctx: &Context, size: c_int) -> Result<Zeroizing<Vec<u8>>, c_int> {
    if size <= 0 || size as usize > MAX_RANDOM_TOTAL {
        return Err(ZK_ERR_INVALID);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(size as usize));
    while out.len() < size as usize {
        let len = (size as usize - out.len()).min(wire::MAX_RANDOM_CHUNK);
        let chunk = expect_bytes(call(ctx, Op::GetRandom { len: len as u32 })?)?;
        if chunk.len() != len {
            return Err(codes::ZK_ERR_PROTOCOL);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn lock(ctx: &Context, data: &[u8], shared: bool) -> Result<Zeroizing<Vec<u8>>, c_int> {
    if data.is_empty() || data.len() > wire::MAX_LOCK_PLAINTEXT {
        return Err(ZK_ERR_INVALID);
    }
    let data = Zeroizing::new(data.to_vec());
    expect_bytes(call(ctx, Op::Lock { shared, data })?)
}

fn unlock(ctx: &Context, blob: &[u8], shared: bool) -> Result<Zeroizing<Vec<u8>>, c_int> {
    if blob.is_empty() || blob.len() > wire::MAX_FRAME - 64 {
        return Err(ZK_ERR_INVALID);
    }
    expect_bytes(call(
        ctx,
        Op::Unlock {
            shared,
            blob: blob.to_vec(),
        },
    )?)
}

const MAX_BLOB: usize = wire::MAX_FRAME - 64;

/// Opens a context: finds the module and checks that it answers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkOpen(ctx: *mut zkCTX) -> c_int {
    guard(|| {
        if ctx.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let endpoint = Endpoint::discover()?;
        let context = Context { endpoint };
        call(&context, Op::GetModel)?;
        let raw = Box::into_raw(Box::new(context)) as zkCTX;
        // SAFETY: `ctx` is valid for one write (checked non-null).
        unsafe { *ctx = raw };
        Ok(codes::ZK_OK)
    })
}

/// Closes a context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkClose(ctx: zkCTX) -> c_int {
    guard(|| {
        if ctx.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        // SAFETY: `ctx` came from `zkOpen`'s `Box::into_raw` and is closed once.
        drop(unsafe { Box::from_raw(ctx as *mut Context) });
        Ok(codes::ZK_OK)
    })
}

/// Returns `rdata_sz` random bytes in a `malloc`ed buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetRandBytes(ctx: zkCTX, rdata: *mut *mut u8, rdata_sz: c_int) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let ctx = unsafe { context(ctx) }?;
        if rdata.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let data = random(ctx, rdata_sz)?;
        let p = malloc_copy(&data, false)?;
        // SAFETY: `rdata` is valid for one write (checked non-null).
        unsafe { *rdata = p };
        Ok(codes::ZK_OK)
    })
}

/// Writes `rdata_sz` random bytes to a file.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkCreateRandDataFile(
    ctx: zkCTX,
    dst_filename: *const c_char,
    rdata_sz: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, path) = unsafe { (context(ctx)?, in_path(dst_filename)?) };
        write_file(&path, &random(ctx, rdata_sz)?)
    })
}

/// Locks a file into a file.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkLockDataF2F(
    ctx: zkCTX,
    src_pt_filename: *const c_char,
    dst_ct_filename: *const c_char,
    use_shared_key: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, src, dst) = unsafe {
            (
                context(ctx)?,
                in_path(src_pt_filename)?,
                in_path(dst_ct_filename)?,
            )
        };
        let pt = read_file(&src, wire::MAX_LOCK_PLAINTEXT)?;
        write_file(&dst, &lock(ctx, &pt, use_shared_key)?)
    })
}

/// Locks a buffer into a file.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkLockDataB2F(
    ctx: zkCTX,
    src_pt: *const u8,
    src_pt_sz: c_int,
    dst_ct_filename: *const c_char,
    use_shared_key: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, pt, dst) = unsafe {
            (
                context(ctx)?,
                in_bytes(src_pt, src_pt_sz, wire::MAX_LOCK_PLAINTEXT)?,
                in_path(dst_ct_filename)?,
            )
        };
        write_file(&dst, &lock(ctx, pt, use_shared_key)?)
    })
}

/// Locks a file into a `malloc`ed buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkLockDataF2B(
    ctx: zkCTX,
    src_pt_filename: *const c_char,
    dst_ct: *mut *mut u8,
    dst_ct_sz: *mut c_int,
    use_shared_key: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, src) = unsafe { (context(ctx)?, in_path(src_pt_filename)?) };
        if dst_ct.is_null() || dst_ct_sz.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let pt = read_file(&src, wire::MAX_LOCK_PLAINTEXT)?;
        let blob = lock(ctx, &pt, use_shared_key)?;
        // SAFETY: out-pointers checked non-null, valid per the contract.
        unsafe { out_bytes(&blob, dst_ct, dst_ct_sz) }
    })
}

/// Locks a buffer into a `malloc`ed buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkLockDataB2B(
    ctx: zkCTX,
    src_pt: *const u8,
    src_pt_sz: c_int,
    dst_ct: *mut *mut u8,
    dst_ct_sz: *mut c_int,
    use_shared_key: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, pt) = unsafe {
            (
                context(ctx)?,
                in_bytes(src_pt, src_pt_sz, wire::MAX_LOCK_PLAINTEXT)?,
            )
        };
        if dst_ct.is_null() || dst_ct_sz.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let blob = lock(ctx, pt, use_shared_key)?;
        // SAFETY: out-pointers checked non-null, valid per the contract.
        unsafe { out_bytes(&blob, dst_ct, dst_ct_sz) }
    })
}

/// Unlocks a file into a file.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkUnlockDataF2F(
    ctx: zkCTX,
    src_ct_filename: *const c_char,
    dst_pt_filename: *const c_char,
    use_shared_key: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, src, dst) = unsafe {
            (
                context(ctx)?,
                in_path(src_ct_filename)?,
                in_path(dst_pt_filename)?,
            )
        };
        let blob = read_file(&src, MAX_BLOB)?;
        write_file(&dst, &unlock(ctx, &blob, use_shared_key)?)
    })
}

/// Unlocks a buffer into a file.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkUnlockDataB2F(
    ctx: zkCTX,
    src_ct: *const u8,
    src_ct_sz: c_int,
    dst_pt_filename: *const c_char,
    use_shared_key: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, blob, dst) = unsafe {
            (
                context(ctx)?,
                in_bytes(src_ct, src_ct_sz, MAX_BLOB)?,
                in_path(dst_pt_filename)?,
            )
        };
        write_file(&dst, &unlock(ctx, blob, use_shared_key)?)
    })
}

/// Unlocks a file into a `malloc`ed buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkUnlockDataF2B(
    ctx: zkCTX,
    src_ct_filename: *const c_char,
    dst_pt: *mut *mut u8,
    dst_pt_sz: *mut c_int,
    use_shared_key: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, src) = unsafe { (context(ctx)?, in_path(src_ct_filename)?) };
        if dst_pt.is_null() || dst_pt_sz.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let blob = read_file(&src, MAX_BLOB)?;
        let pt = unlock(ctx, &blob, use_shared_key)?;
        // SAFETY: out-pointers checked non-null, valid per the contract.
        unsafe { out_bytes(&pt, dst_pt, dst_pt_sz) }
    })
}

/// Unlocks a buffer into a `malloc`ed buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkUnlockDataB2B(
    ctx: zkCTX,
    src_ct: *const u8,
    src_ct_sz: c_int,
    dst_pt: *mut *mut u8,
    dst_pt_sz: *mut c_int,
    use_shared_key: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, blob) = unsafe { (context(ctx)?, in_bytes(src_ct, src_ct_sz, MAX_BLOB)?) };
        if dst_pt.is_null() || dst_pt_sz.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let pt = unlock(ctx, blob, use_shared_key)?;
        // SAFETY: out-pointers checked non-null, valid per the contract.
        unsafe { out_bytes(&pt, dst_pt, dst_pt_sz) }
    })
}

unsafe fn digest32(digest: *const u8) -> Result<[u8; 32], c_int> {
    // SAFETY: a digest is 32 readable bytes per the contract.
    let d = unsafe { in_bytes(digest, 32, 32) }?;
    let mut out = [0u8; 32];
    out.copy_from_slice(d);
    Ok(out)
}

/// Signs a SHA-256 digest with the key in `slot`; the signature is raw `r || s` (64 bytes).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGenECDSASigFromDigest(
    ctx: zkCTX,
    digest: *const u8,
    slot: c_int,
    sig: *mut *mut u8,
    sig_sz: *mut c_int,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, digest) = unsafe { (context(ctx)?, digest32(digest)?) };
        if sig.is_null() || sig_sz.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let s = expect_bytes(call(ctx, Op::Sign { slot, digest })?)?;
        // SAFETY: out-pointers checked non-null, valid per the contract.
        unsafe { out_bytes(&s, sig, sig_sz) }
    })
}

/// Verifies a signature with the key in `slot`: 1 = valid, 0 = invalid, negative = error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkVerifyECDSASigFromDigest(
    ctx: zkCTX,
    digest: *const u8,
    slot: c_int,
    sig: *const u8,
    sig_sz: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let (ctx, digest, sig) = unsafe {
            (
                context(ctx)?,
                digest32(digest)?,
                in_bytes(sig, sig_sz, 256)?,
            )
        };
        match call(
            ctx,
            Op::Verify {
                slot,
                digest,
                sig: sig.to_vec(),
            },
        )? {
            Reply::Verified(ok) => Ok(c_int::from(ok)),
            _ => Err(codes::ZK_ERR_PROTOCOL),
        }
    })
}

/// Exports the public key of `pubkey_slot` as 64 bytes `X || Y`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkExportPubKey(
    ctx: zkCTX,
    pk: *mut *mut u8,
    pk_sz: *mut c_int,
    pubkey_slot: c_int,
    slot_is_foreign: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let ctx = unsafe { context(ctx) }?;
        if pk.is_null() || pk_sz.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let key = expect_bytes(call(
            ctx,
            Op::ExportPubKey {
                slot: pubkey_slot,
                foreign: slot_is_foreign,
            },
        )?)?;
        // SAFETY: out-pointers checked non-null, valid per the contract.
        unsafe { out_bytes(&key, pk, pk_sz) }
    })
}

/// The deprecated form of [`zkExportPubKey`] (no foreign slots).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetECDSAPubKey(
    ctx: zkCTX,
    pk: *mut *mut u8,
    pk_sz: *mut c_int,
    slot: c_int,
) -> c_int {
    // SAFETY: same contract as zkExportPubKey.
    unsafe { zkExportPubKey(ctx, pk, pk_sz, slot, false) }
}

fn simple(ctx: zkCTX, op: Op) -> c_int {
    guard(|| {
        // SAFETY: contract of the calling function (module docs).
        let ctx = unsafe { context(ctx) }?;
        expect_done(call(ctx, op)?)
    })
}

/// Sets the actions (NOTIFY = 1, SELF_DESTRUCT = 2) of perimeter channel 0 or 1.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkSetPerimeterEventAction(
    ctx: zkCTX,
    channel: c_int,
    action_flags: u32,
) -> c_int {
    simple(
        ctx,
        Op::SetPerimeterAction {
            channel,
            flags: action_flags,
        },
    )
}

/// Returns the first-breach time of each channel (0 = none) in a `malloc`ed array.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetPerimeterDetectInfo(
    ctx: zkCTX,
    timestamps_sec: *mut *mut u32,
    num_timestamps: *mut c_int,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let ctx = unsafe { context(ctx) }?;
        if timestamps_sec.is_null() || num_timestamps.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let Reply::Timestamps(ts) = call(ctx, Op::GetPerimeterInfo)? else {
            return Err(codes::ZK_ERR_PROTOCOL);
        };
        let bytes: Vec<u8> = ts.iter().flat_map(|t| t.to_ne_bytes()).collect();
        let p = malloc_copy(&bytes, false)?;
        // SAFETY: out-pointers checked non-null; malloc's alignment suits u32.
        unsafe {
            *timestamps_sec = p as *mut u32;
            *num_timestamps = ts.len() as c_int;
        }
        Ok(codes::ZK_OK)
    })
}

/// Clears perimeter events and rearms both channels.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkClearPerimeterDetectEvents(ctx: zkCTX) -> c_int {
    simple(ctx, Op::ClearPerimeter)
}

fn wait(ctx: zkCTX, op: Op, timeout_ms: u32) -> c_int {
    guard(|| {
        // SAFETY: contract of the calling function (module docs).
        let ctx = unsafe { context(ctx) }?;
        let reply = transport::call(&ctx.endpoint, op, Duration::from_millis(timeout_ms.into()))?;
        expect_done(reply)
    })
}

/// Waits up to `timeout_ms` for a perimeter event (`-ETIMEDOUT` if none).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkWaitForPerimeterEvent(ctx: zkCTX, timeout_ms: u32) -> c_int {
    wait(ctx, Op::WaitPerimeter { timeout_ms }, timeout_ms)
}

/// Sets tap sensitivity (0–100 %) of an axis (0–2) or all axes (3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkSetTapSensitivity(ctx: zkCTX, axis: c_int, pct: f32) -> c_int {
    simple(
        ctx,
        Op::SetTapSensitivity {
            axis,
            pct_bits: pct.to_bits(),
        },
    )
}

/// Waits up to `timeout_ms` for a tap (`-ETIMEDOUT` if none).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkWaitForTap(ctx: zkCTX, timeout_ms: u32) -> c_int {
    wait(ctx, Op::WaitTap { timeout_ms }, timeout_ms)
}

/// Reads the accelerometer and the tap direction per axis.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetAccelerometerData(
    ctx: zkCTX,
    x: *mut zkAccelAxisDataType,
    y: *mut zkAccelAxisDataType,
    z: *mut zkAccelAxisDataType,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let ctx = unsafe { context(ctx) }?;
        if x.is_null() || y.is_null() || z.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let Reply::Accel(axes) = call(ctx, Op::GetAccel)? else {
            return Err(codes::ZK_ERR_PROTOCOL);
        };
        for (out, a) in [x, y, z].into_iter().zip(axes) {
            // SAFETY: each out-pointer checked non-null, valid per the contract.
            unsafe {
                *out = zkAccelAxisDataType {
                    g: a.g,
                    tapDirection: a.tap_direction,
                }
            };
        }
        Ok(codes::ZK_OK)
    })
}

/// Reads the module's clock (seconds since the epoch).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetTime(
    ctx: zkCTX,
    epoch_time_sec: *mut u32,
    precise_time: bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let ctx = unsafe { context(ctx) }?;
        if epoch_time_sec.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let Reply::Time(t) = call(
            ctx,
            Op::GetTime {
                precise: precise_time,
            },
        )?
        else {
            return Err(codes::ZK_ERR_PROTOCOL);
        };
        // SAFETY: out-pointer checked non-null.
        unsafe { *epoch_time_sec = t };
        Ok(codes::ZK_OK)
    })
}

/// Turns the LED off.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkLEDOff(ctx: zkCTX) -> c_int {
    simple(ctx, Op::LedOff)
}

/// Turns the LED on.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkLEDOn(ctx: zkCTX) -> c_int {
    simple(ctx, Op::LedOn)
}

/// Flashes the LED (`num_flashes` 0 = forever).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkLEDFlash(
    ctx: zkCTX,
    on_ms: u32,
    off_ms: u32,
    num_flashes: u32,
) -> c_int {
    simple(
        ctx,
        Op::LedFlash {
            on_ms,
            off_ms,
            count: num_flashes,
        },
    )
}

/// Sets the I2C address (0x30–0x37, 0x60–0x67).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkSetI2CAddr(ctx: zkCTX, addr: c_int) -> c_int {
    simple(ctx, Op::SetI2cAddr { addr })
}

/// Soft binding lock: HSM-only, `ZK_ERR_UNSUPPORTED` on a ZYMKEY4 (its tab is cut instead).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkLockBinding(ctx: zkCTX) -> c_int {
    simple(ctx, Op::LockBinding)
}

/// Reports whether the binding is locked (production) and whether the module is bound here.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetCurrentBindingInfo(
    ctx: zkCTX,
    binding_is_locked: *mut bool,
    is_bound: *mut bool,
) -> c_int {
    guard(|| {
        // SAFETY: contract of this function (module docs).
        let ctx = unsafe { context(ctx) }?;
        if binding_is_locked.is_null() || is_bound.is_null() {
            return Err(ZK_ERR_INVALID);
        }
        let Reply::Binding { locked, bound } = call(ctx, Op::GetBindingInfo)? else {
            return Err(codes::ZK_ERR_PROTOCOL);
        };
        // SAFETY: out-pointers checked non-null.
        unsafe {
            *binding_is_locked = locked;
            *is_bound = bound;
        }
        Ok(codes::ZK_OK)
    })
}

fn text(ctx: zkCTX, op: Op, out: *mut *mut c_char) -> c_int {
    guard(|| {
        // SAFETY: contract of the calling function (module docs).
        let ctx = unsafe { context(ctx) }?;
        let Reply::Text(t) = call(ctx, op)? else {
            return Err(codes::ZK_ERR_PROTOCOL);
        };
        // SAFETY: out-pointer validity per the contract; checked inside.
        unsafe { out_string(&t, out) }
    })
}

/// The model string, `malloc`ed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetModelNumberString(ctx: zkCTX, model_str: *mut *mut c_char) -> c_int {
    text(ctx, Op::GetModel, model_str)
}

/// The firmware version string, `malloc`ed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetFirmwareVersionString(
    ctx: zkCTX,
    fw_ver_str: *mut *mut c_char,
) -> c_int {
    text(ctx, Op::GetFirmware, fw_ver_str)
}

/// The serial number string, `malloc`ed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn zkGetSerialNumberString(
    ctx: zkCTX,
    serial_num_str: *mut *mut c_char,
) -> c_int {
    text(ctx, Op::GetSerial, serial_num_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_pointers_are_refused_not_dereferenced() {
        // SAFETY: the functions must refuse null pointers without touching them.
        unsafe {
            assert_eq!(zkOpen(std::ptr::null_mut()), ZK_ERR_INVALID);
            assert_eq!(zkClose(std::ptr::null_mut()), ZK_ERR_INVALID);
            assert_eq!(
                zkGetRandBytes(std::ptr::null_mut(), std::ptr::null_mut(), 4),
                ZK_ERR_INVALID
            );
            assert_eq!(zkLEDOn(std::ptr::null_mut()), ZK_ERR_INVALID);
        }
    }

    #[test]
    fn a_panic_becomes_the_general_error() {
        assert_eq!(guard(|| panic!("boom")), codes::ZK_ERR_GENERAL);
    }
}
