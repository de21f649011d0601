//! Test fixture: emulated Zymkeys reached through the real stack (bins/zymkey → drop-in
//! libzk_app_utils.so → zymkey-emu over a unix socket), vendor keys, image files, and a
//! byte search for secrets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sealed_root::{BoardProfile, FormatParams, VolumeKey};
use serde_json::Value;
use zymkey::Zymkey;

/// An emulated module reached through the real client stack (the shared zymkey-testkit
/// fixture); opening a context cannot fail in these tests.
pub(crate) struct Module(zymkey_testkit::Module);

impl Module {
    /// A fresh module attached to `board` with `card`.
    pub(crate) fn start(board: &str, card: &str) -> Self {
        Self(zymkey_testkit::Module::start(board, card))
    }

    /// A control request that must succeed.
    pub(crate) fn ctl(&self, request: Value) -> Value {
        self.0.ctl(request)
    }

    /// The guest socket (what `KEYBOUND_ZK_SOCKET` names for a client in another process).
    pub(crate) fn socket(&self) -> &Path {
        self.0.socket()
    }

    /// A production-client context on this module.
    pub(crate) fn open(&self) -> Zymkey {
        self.0.open().expect("zkOpen on the emulated module")
    }
}

/// A vendor identity and its recipient.
pub(crate) fn vendor() -> (age::x25519::Identity, age::x25519::Recipient) {
    let id = age::x25519::Identity::generate();
    let r = id.to_public();
    (id, r)
}

/// An empty image file of `mib` MiB in `dir`.
pub(crate) fn image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(mib << 20).unwrap();
    p
}

/// A fresh AES-XTS volume on a new 24 MiB image.
pub(crate) fn fresh_volume(dir: &Path, name: &str) -> (PathBuf, VolumeKey) {
    let img = image(dir, name, 24);
    let vk = sealed_root::format_fresh(
        &img,
        &FormatParams {
            profile: BoardProfile::AesXts,
            label: Some("keybound-root".into()),
        },
    )
    .expect("format_fresh");
    (img, vk)
}

/// `cryptsetup luksDump` of an image, as text.
pub(crate) fn luks_dump(img: &Path) -> String {
    let out = std::process::Command::new("cryptsetup")
        .arg("luksDump")
        .arg(img)
        .output()
        .expect("running cryptsetup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `cryptsetup open --test-passphrase --key-slot N --key-file=-` with `key` on stdin.
pub(crate) fn cli_test_passphrase(img: &Path, keyslot: u32, key: &[u8]) -> bool {
    use std::io::Write;
    let mut child = std::process::Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file=-", "--key-slot"])
        .arg(keyslot.to_string())
        .arg(img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("running cryptsetup");
    child.stdin.take().unwrap().write_all(key).unwrap();
    child.wait().unwrap().success()
}

/// The encodings of `secret` a careless program might leave on a card: raw, hex (both cases),
/// base64 (standard, unpadded, URL-safe).
pub(crate) fn encodings(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("raw".into(), secret.to_vec()),
        ("hex".into(), hex.clone().into_bytes()),
        ("HEX".into(), hex.to_uppercase().into_bytes()),
        ("base64".into(), STANDARD.encode(secret).into_bytes()),
        (
            "base64-nopad".into(),
            STANDARD_NO_PAD.encode(secret).into_bytes(),
        ),
        (
            "base64url".into(),
            URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        ),
    ]
}

/// Which encodings of `secret` occur in `haystack`.
pub(crate) fn found_in(haystack: &[u8], secret: &[u8]) -> Vec<String> {
    encodings(secret)
        .into_iter()
        .filter(|(_, needle)| {
            // A literal byte pattern: regex searches it with memchr/memmem (fast even in debug).
            let bytes: String = needle.iter().map(|b| format!("\\x{b:02x}")).collect();
            let pattern = format!("(?-u){bytes}");
            regex::bytes::Regex::new(&pattern)
                .unwrap()
                .is_match(haystack)
        })
        .map(|(name, _)| name)
        .collect()
}
