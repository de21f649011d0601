//! Locked blobs: arbitrary bytes never unlock and never panic; a real blob round-trips, and
//! any single-bit flip or truncation of it is refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zymkey_emu::blob;
use zymkey_emu::keys::{KeyKind, ModuleKeys, ModuleSecret};
use zymkey_emu::wire::MAX_LOCK_PLAINTEXT;

fn keys() -> &'static ModuleKeys {
    static KEYS: OnceLock<ModuleKeys> = OnceLock::new();
    KEYS.get_or_init(|| ModuleKeys::derive(&ModuleSecret::from_bytes([3; 32])))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let kind = KeyKind::from_shared(mode & 1 == 1);
    if mode & 2 == 0 {
        let _ = blob::parse(rest);
        assert!(blob::unlock(keys(), kind, rest).is_err());
        return;
    }
    // Structured: lock `plaintext`, check the round trip, then damage it as `rest` says.
    if rest.len() < 4 {
        return;
    }
    let (ctl, plaintext) = rest.split_at(4);
    if plaintext.is_empty() || plaintext.len() > MAX_LOCK_PLAINTEXT {
        return;
    }
    let sealed = blob::lock(keys(), kind, plaintext);
    assert_eq!(&blob::unlock(keys(), kind, &sealed).unwrap()[..], plaintext);
    let pick = u32::from_le_bytes([ctl[0], ctl[1], ctl[2], ctl[3]]) as usize;
    let mut flipped = sealed.clone();
    let bit = pick % (sealed.len() * 8);
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(blob::unlock(keys(), kind, &flipped).is_err());
    assert!(blob::unlock(keys(), kind, &sealed[..pick % sealed.len()]).is_err());
});
