//! The secure element as the sealed root needs it: random bytes, lock, unlock.

use zeroize::Zeroizing;

/// What the sealed root asks of a secure element. Implemented for [`zymkey::Zymkey`] (locking
/// with the module's one-way key); other implementations serve tests.
pub trait SecureElement {
    /// `n` bytes from the element's RNG.
    fn random(&self, n: usize) -> zymkey::Result<Zeroizing<Vec<u8>>>;
    /// Locks (encrypts and signs) `data`; the blob is safe to store in the header.
    fn lock(&self, data: &[u8]) -> zymkey::Result<Vec<u8>>;
    /// Unlocks a blob this element locked.
    fn unlock(&self, blob: &[u8]) -> zymkey::Result<Zeroizing<Vec<u8>>>;
}

impl SecureElement for zymkey::Zymkey {
    fn random(&self, n: usize) -> zymkey::Result<Zeroizing<Vec<u8>>> {
        self.random_bytes(n)
    }

    fn lock(&self, data: &[u8]) -> zymkey::Result<Vec<u8>> {
        zymkey::Zymkey::lock(self, data, zymkey::LockKey::OneWay)
    }

    fn unlock(&self, blob: &[u8]) -> zymkey::Result<Zeroizing<Vec<u8>>> {
        zymkey::Zymkey::unlock(self, blob, zymkey::LockKey::OneWay)
    }
}
