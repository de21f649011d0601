//! Return codes of the drop-in library and of the guest wire protocol.
//!
//! Zymbit publishes no error table: every call returns 0 on success and a negative number on
//! failure (waits return `-ETIMEDOUT`). These are ours, documented in the crate README, and the
//! production client keeps an `Unknown(code)` case for anything else. Codes in the errno range
//! keep their errno meaning; module conditions use -1000 and below.

/// Success.
pub const ZK_OK: i32 = 0;
/// Unspecified internal failure (also what a panic caught at the C boundary returns).
pub const ZK_ERR_GENERAL: i32 = -1;
/// I/O error talking to the module: the port or socket failed, or the module did not answer in
/// time (also a connection the module dropped).
pub const ZK_ERR_IO: i32 = -libc::EIO;
/// Out of memory while allocating a buffer for the caller.
pub const ZK_ERR_NOMEM: i32 = -libc::ENOMEM;
/// No module: no virtio port named `io.keybound.zymkey`, no socket, or nothing listening.
pub const ZK_ERR_NO_MODULE: i32 = -libc::ENODEV;
/// An argument is invalid: null pointer, size out of range, bad slot, channel, axis or address.
pub const ZK_ERR_INVALID: i32 = -libc::EINVAL;
/// The wire protocol failed: malformed frame, unsupported version, unexpected reply.
pub const ZK_ERR_PROTOCOL: i32 = -libc::EPROTO;
/// A wait (`zkWaitForTap`, `zkWaitForPerimeterEvent`) saw no event within its timeout.
pub const ZK_ERR_TIMEDOUT: i32 = -libc::ETIMEDOUT;
/// The call exists in Zymbit's API but not on a ZYMKEY4 (HSM-only features).
pub const ZK_ERR_UNSUPPORTED: i32 = -libc::EOPNOTSUPP;
/// Binding check failed: production mode on a host whose fingerprint is not the bound one; all
/// security services are stopped.
pub const ZK_ERR_BINDING: i32 = -1001;
/// The module self-destructed: its secret is gone for good.
pub const ZK_ERR_DESTROYED: i32 = -1002;
/// The module is not attached to a host (no board reported its fingerprint).
pub const ZK_ERR_NOT_ATTACHED: i32 = -1003;
/// A locked blob was made by another module.
pub const ZK_ERR_BLOB_FOREIGN: i32 = -1010;
/// A locked blob was modified (signature or authentication failed, or its structure is wrong).
pub const ZK_ERR_BLOB_MODIFIED: i32 = -1011;
/// A locked blob is shorter than its header says.
pub const ZK_ERR_BLOB_TRUNCATED: i32 = -1012;
/// A locked blob has a format version this module does not know.
pub const ZK_ERR_BLOB_VERSION: i32 = -1013;
/// A locked blob was locked with the other key (`use_shared_key` differs).
pub const ZK_ERR_BLOB_KEY: i32 = -1014;

/// Every code above with its name, for documentation and tests.
pub const ALL: &[(i32, &str)] = &[
    (ZK_OK, "ZK_OK"),
    (ZK_ERR_GENERAL, "ZK_ERR_GENERAL"),
    (ZK_ERR_IO, "ZK_ERR_IO"),
    (ZK_ERR_NOMEM, "ZK_ERR_NOMEM"),
    (ZK_ERR_NO_MODULE, "ZK_ERR_NO_MODULE"),
    (ZK_ERR_INVALID, "ZK_ERR_INVALID"),
    (ZK_ERR_PROTOCOL, "ZK_ERR_PROTOCOL"),
    (ZK_ERR_TIMEDOUT, "ZK_ERR_TIMEDOUT"),
    (ZK_ERR_UNSUPPORTED, "ZK_ERR_UNSUPPORTED"),
    (ZK_ERR_BINDING, "ZK_ERR_BINDING"),
    (ZK_ERR_DESTROYED, "ZK_ERR_DESTROYED"),
    (ZK_ERR_NOT_ATTACHED, "ZK_ERR_NOT_ATTACHED"),
    (ZK_ERR_BLOB_FOREIGN, "ZK_ERR_BLOB_FOREIGN"),
    (ZK_ERR_BLOB_MODIFIED, "ZK_ERR_BLOB_MODIFIED"),
    (ZK_ERR_BLOB_TRUNCATED, "ZK_ERR_BLOB_TRUNCATED"),
    (ZK_ERR_BLOB_VERSION, "ZK_ERR_BLOB_VERSION"),
    (ZK_ERR_BLOB_KEY, "ZK_ERR_BLOB_KEY"),
];

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_distinct_and_failures_negative() {
        let mut seen = std::collections::HashSet::new();
        for (code, name) in super::ALL {
            assert!(seen.insert(*code), "{name} duplicates {code}");
            assert!(*code <= 0, "{name}");
        }
    }
}
