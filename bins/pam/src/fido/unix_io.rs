//! libfido2 custom I/O over a raw CTAPHID unix socket (virtual-fido's `--raw-socket`): every
//! message in either direction is one 64-byte report. Lets tests and benches drive the real
//! libfido2 client code without a kernel HID device. Never reachable from PAM options.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::ffi::fido_dev_io_t;

const REPORT: usize = 64;

unsafe extern "C" fn open(path: *const c_char) -> *mut c_void {
    if path.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: libfido2 passes the NUL-terminated path given to fido_dev_open.
    let path = unsafe { CStr::from_ptr(path) };
    let Ok(path) = path.to_str() else {
        return std::ptr::null_mut();
    };
    match UnixStream::connect(path) {
        Ok(s) => Box::into_raw(Box::new(s)).cast(),
        Err(_) => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn close(handle: *mut c_void) {
    if !handle.is_null() {
        // SAFETY: handle came from Box::into_raw in `open` and libfido2 closes it once.
        drop(unsafe { Box::from_raw(handle.cast::<UnixStream>()) });
    }
}

unsafe extern "C" fn read(handle: *mut c_void, buf: *mut u8, len: usize, ms: c_int) -> c_int {
    if handle.is_null() || buf.is_null() || len < REPORT {
        return -1;
    }
    // SAFETY: handle is the live stream from `open`; libfido2 does not share it across threads.
    let stream = unsafe { &mut *handle.cast::<UnixStream>() };
    let timeout = (ms >= 0).then(|| Duration::from_millis(u64::from(ms.max(1).unsigned_abs())));
    if stream.set_read_timeout(timeout).is_err() {
        return -1;
    }
    // SAFETY: libfido2 gives a writable buffer of `len` >= 64 bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf, REPORT) };
    match stream.read_exact(out) {
        Ok(()) => REPORT as c_int,
        Err(_) => -1,
    }
}

unsafe extern "C" fn write(handle: *mut c_void, buf: *const u8, len: usize) -> c_int {
    if handle.is_null() || buf.is_null() {
        return -1;
    }
    // SAFETY: handle is the live stream from `open`.
    let stream = unsafe { &mut *handle.cast::<UnixStream>() };
    // SAFETY: libfido2 gives a readable buffer of `len` bytes.
    let data = unsafe { std::slice::from_raw_parts(buf, len) };
    // HID writes carry a leading report id (0); the raw socket wants the bare 64-byte report.
    let report = match data.len() {
        n if n == REPORT + 1 => &data[1..],
        REPORT => data,
        _ => return -1,
    };
    match stream.write_all(report) {
        Ok(()) => len as c_int,
        Err(_) => -1,
    }
}

/// The I/O table for raw-socket devices.
pub(crate) fn io_table() -> fido_dev_io_t {
    fido_dev_io_t {
        open: Some(open),
        close: Some(close),
        read: Some(read),
        write: Some(write),
    }
}
