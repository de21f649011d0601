//! The few libfido2 (1.12, BSD-2-Clause) functions this crate uses, declared by hand from
//! `<fido.h>`. Opaque types are zero-sized and only ever used behind pointers.
#![allow(non_camel_case_types, missing_docs)]

use std::ffi::{c_char, c_int, c_void};

#[repr(C)]
pub(crate) struct fido_dev_t {
    _opaque: [u8; 0],
}
#[repr(C)]
pub(crate) struct fido_dev_info_t {
    _opaque: [u8; 0],
}
#[repr(C)]
pub(crate) struct fido_assert_t {
    _opaque: [u8; 0],
}
#[repr(C)]
pub(crate) struct fido_cred_t {
    _opaque: [u8; 0],
}

pub(crate) type fido_opt_t = c_int;
pub(crate) const FIDO_OPT_OMIT: fido_opt_t = 0;
pub(crate) const FIDO_OPT_FALSE: fido_opt_t = 1;
pub(crate) const FIDO_OPT_TRUE: fido_opt_t = 2;

pub(crate) const FIDO_OK: c_int = 0;
pub(crate) const FIDO_ERR_USER_PRESENCE_REQUIRED: c_int = -8;
pub(crate) const COSE_ES256: c_int = -7;
pub(crate) const COSE_EDDSA: c_int = -8;

pub(crate) type IoOpen = unsafe extern "C" fn(*const c_char) -> *mut c_void;
pub(crate) type IoClose = unsafe extern "C" fn(*mut c_void);
pub(crate) type IoRead = unsafe extern "C" fn(*mut c_void, *mut u8, usize, c_int) -> c_int;
pub(crate) type IoWrite = unsafe extern "C" fn(*mut c_void, *const u8, usize) -> c_int;

#[repr(C)]
pub(crate) struct fido_dev_io_t {
    pub(crate) open: Option<IoOpen>,
    pub(crate) close: Option<IoClose>,
    pub(crate) read: Option<IoRead>,
    pub(crate) write: Option<IoWrite>,
}

#[link(name = "fido2")]
unsafe extern "C" {
    pub(crate) fn fido_init(flags: c_int);
    pub(crate) fn fido_strerr(code: c_int) -> *const c_char;

    pub(crate) fn fido_dev_info_new(n: usize) -> *mut fido_dev_info_t;
    pub(crate) fn fido_dev_info_free(di: *mut *mut fido_dev_info_t, n: usize);
    pub(crate) fn fido_dev_info_manifest(
        di: *mut fido_dev_info_t,
        ilen: usize,
        olen: *mut usize,
    ) -> c_int;
    pub(crate) fn fido_dev_info_ptr(di: *const fido_dev_info_t, i: usize)
    -> *const fido_dev_info_t;
    pub(crate) fn fido_dev_info_path(di: *const fido_dev_info_t) -> *const c_char;

    pub(crate) fn fido_dev_new() -> *mut fido_dev_t;
    pub(crate) fn fido_dev_free(dev: *mut *mut fido_dev_t);
    pub(crate) fn fido_dev_open(dev: *mut fido_dev_t, path: *const c_char) -> c_int;
    pub(crate) fn fido_dev_close(dev: *mut fido_dev_t) -> c_int;
    pub(crate) fn fido_dev_set_io_functions(
        dev: *mut fido_dev_t,
        io: *const fido_dev_io_t,
    ) -> c_int;
    pub(crate) fn fido_dev_set_timeout(dev: *mut fido_dev_t, ms: c_int) -> c_int;
    pub(crate) fn fido_dev_is_fido2(dev: *const fido_dev_t) -> bool;
    pub(crate) fn fido_dev_get_assert(
        dev: *mut fido_dev_t,
        assert: *mut fido_assert_t,
        pin: *const c_char,
    ) -> c_int;
    pub(crate) fn fido_dev_set_pin(
        dev: *mut fido_dev_t,
        pin: *const c_char,
        oldpin: *const c_char,
    ) -> c_int;
    pub(crate) fn fido_dev_make_cred(
        dev: *mut fido_dev_t,
        cred: *mut fido_cred_t,
        pin: *const c_char,
    ) -> c_int;

    pub(crate) fn fido_assert_new() -> *mut fido_assert_t;
    pub(crate) fn fido_assert_free(assert: *mut *mut fido_assert_t);
    pub(crate) fn fido_assert_set_clientdata_hash(
        assert: *mut fido_assert_t,
        ptr: *const u8,
        len: usize,
    ) -> c_int;
    pub(crate) fn fido_assert_set_rp(assert: *mut fido_assert_t, id: *const c_char) -> c_int;
    pub(crate) fn fido_assert_allow_cred(
        assert: *mut fido_assert_t,
        ptr: *const u8,
        len: usize,
    ) -> c_int;
    pub(crate) fn fido_assert_set_up(assert: *mut fido_assert_t, up: fido_opt_t) -> c_int;
    pub(crate) fn fido_assert_set_uv(assert: *mut fido_assert_t, uv: fido_opt_t) -> c_int;
    pub(crate) fn fido_assert_count(assert: *const fido_assert_t) -> usize;
    pub(crate) fn fido_assert_authdata_ptr(assert: *const fido_assert_t, idx: usize) -> *const u8;
    pub(crate) fn fido_assert_authdata_len(assert: *const fido_assert_t, idx: usize) -> usize;
    pub(crate) fn fido_assert_sig_ptr(assert: *const fido_assert_t, idx: usize) -> *const u8;
    pub(crate) fn fido_assert_sig_len(assert: *const fido_assert_t, idx: usize) -> usize;
    pub(crate) fn fido_assert_id_ptr(assert: *const fido_assert_t, idx: usize) -> *const u8;
    pub(crate) fn fido_assert_id_len(assert: *const fido_assert_t, idx: usize) -> usize;

    pub(crate) fn fido_cred_new() -> *mut fido_cred_t;
    pub(crate) fn fido_cred_free(cred: *mut *mut fido_cred_t);
    pub(crate) fn fido_cred_set_type(cred: *mut fido_cred_t, cose_alg: c_int) -> c_int;
    pub(crate) fn fido_cred_set_clientdata_hash(
        cred: *mut fido_cred_t,
        ptr: *const u8,
        len: usize,
    ) -> c_int;
    pub(crate) fn fido_cred_set_rp(
        cred: *mut fido_cred_t,
        id: *const c_char,
        name: *const c_char,
    ) -> c_int;
    pub(crate) fn fido_cred_set_user(
        cred: *mut fido_cred_t,
        id: *const u8,
        id_len: usize,
        name: *const c_char,
        display_name: *const c_char,
        icon: *const c_char,
    ) -> c_int;
    pub(crate) fn fido_cred_set_rk(cred: *mut fido_cred_t, rk: fido_opt_t) -> c_int;
    pub(crate) fn fido_cred_set_uv(cred: *mut fido_cred_t, uv: fido_opt_t) -> c_int;
    pub(crate) fn fido_cred_id_ptr(cred: *const fido_cred_t) -> *const u8;
    pub(crate) fn fido_cred_id_len(cred: *const fido_cred_t) -> usize;
    pub(crate) fn fido_cred_pubkey_ptr(cred: *const fido_cred_t) -> *const u8;
    pub(crate) fn fido_cred_pubkey_len(cred: *const fido_cred_t) -> usize;
    pub(crate) fn fido_cred_authdata_raw_ptr(cred: *const fido_cred_t) -> *const u8;
    pub(crate) fn fido_cred_authdata_raw_len(cred: *const fido_cred_t) -> usize;
}
