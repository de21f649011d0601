//! The module secret and every key derived from it (HKDF-SHA256). Wiping the secret wipes them
//! all: blobs, ECDSA slots and the module tag die together.

use hkdf::Hkdf;
use p256::ecdsa::{SigningKey, VerifyingKey};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The module's own 256-bit secret (the "one-way key" root). Never leaves the module.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ModuleSecret([u8; 32]);

impl ModuleSecret {
    /// A fresh secret from the OS RNG.
    pub fn generate() -> Self {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).expect("the OS random number generator failed");
        Self(s)
    }

    /// A secret from bytes (state files, tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes (for the state file only).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for ModuleSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModuleSecret(..)")
    }
}

/// Which lock key a blob uses (`use_shared_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The one-way key: data stays on this host.
    OneWay,
    /// The shared key (for a peer that can derive it; here also module-bound).
    Shared,
}

impl KeyKind {
    /// From the C API's `use_shared_key`.
    pub fn from_shared(shared: bool) -> Self {
        if shared { Self::Shared } else { Self::OneWay }
    }
    /// The byte stored in a blob header.
    pub fn byte(self) -> u8 {
        match self {
            Self::OneWay => 0,
            Self::Shared => 1,
        }
    }
}

/// Keys derived from a [`ModuleSecret`].
pub struct ModuleKeys {
    one_way: Zeroizing<[u8; 32]>,
    shared: Zeroizing<[u8; 32]>,
    blob_signer: SigningKey,
    slots: [SigningKey; 3],
    tag: [u8; 16],
}

fn expand(hk: &Hkdf<Sha256>, info: &str) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(info.as_bytes(), &mut *okm)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    okm
}

fn signing_key(hk: &Hkdf<Sha256>, info: &str) -> SigningKey {
    // A derived scalar is invalid (zero or >= n) with probability ~2^-128; retry with a counter.
    (0u32..)
        .find_map(|i| SigningKey::from_slice(&*expand(hk, &format!("{info} #{i}"))).ok())
        .expect("a valid scalar within a few tries")
}

impl ModuleKeys {
    /// Derives every key of the module.
    pub fn derive(secret: &ModuleSecret) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"keybound zymkey-emu v1"), &secret.0);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&expand(&hk, "module tag")[..16]);
        Self {
            one_way: expand(&hk, "lock key one-way"),
            shared: expand(&hk, "lock key shared"),
            blob_signer: signing_key(&hk, "blob signature"),
            slots: [
                signing_key(&hk, "ecdsa slot 0"),
                signing_key(&hk, "ecdsa slot 1"),
                signing_key(&hk, "ecdsa slot 2"),
            ],
            tag,
        }
    }

    /// The AEAD key for a blob of kind `kind`.
    pub fn lock_key(&self, kind: KeyKind) -> &[u8; 32] {
        match kind {
            KeyKind::OneWay => &self.one_way,
            KeyKind::Shared => &self.shared,
        }
    }

    /// The key that signs blobs.
    pub fn blob_signer(&self) -> &SigningKey {
        &self.blob_signer
    }

    /// The public half of the blob key.
    pub fn blob_verifier(&self) -> VerifyingKey {
        *self.blob_signer.verifying_key()
    }

    /// The ECDSA key of slot 0–2.
    pub fn slot(&self, slot: usize) -> Option<&SigningKey> {
        self.slots.get(slot)
    }

    /// The 16-byte tag naming this module in its blobs (reveals nothing of the secret).
    pub fn tag(&self) -> &[u8; 16] {
        &self.tag
    }
}
