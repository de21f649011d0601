//! The vendor's desk as a library: building and signing Raspberry Pi secure-boot images
//! (`boot.img` + `boot.sig`). The `keybound-vendor` binary and the test harness both use it.

pub mod boot;
