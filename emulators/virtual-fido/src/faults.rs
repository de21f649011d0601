//! Faults armed over the control socket, each applied once to the next `CBOR` or `MSG` response.

use std::collections::VecDeque;
use std::sync::Mutex;

/// One misbehaviour of the token, applied to the next `CBOR`/`MSG` response (one-shot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Every payload byte after the first (the CTAP status byte) is XORed with 0x5A; a response
    /// of one byte has that byte XORed.
    Corrupt,
    /// The response is padded with 0xAA bytes past the CTAPHID maximum (7609 bytes): the length
    /// field claims more than a valid device may send and sequence numbers wrap.
    Oversize,
    /// No response at all, not even keepalives after the processing ends; the channel is free
    /// again for the next request.
    Stall,
    /// The first report of the response is sent, then the connection is dropped (raw socket:
    /// closed; usb-redir: the token is unplugged until `plug`), as if the token was pulled
    /// mid-transaction.
    Drop,
    /// The next assertion is made for another relying party: its authenticator data carries the
    /// rpId hash of `evil.example`, correctly signed (a token fooled by a phishing site, or a
    /// hostile one). Not a transport fault: the authenticator applies it.
    WrongRp,
}

/// The queue of armed faults.
#[derive(Debug, Default)]
pub struct Faults(Mutex<VecDeque<Fault>>);

impl Faults {
    /// Arms `fault` after any already armed.
    pub fn arm(&self, fault: Fault) {
        self.lock().push_back(fault);
    }
    /// Takes the next armed fault.
    pub fn take(&self) -> Option<Fault> {
        self.lock().pop_front()
    }
    /// Takes the next armed fault if it is `fault`.
    pub fn take_if(&self, fault: Fault) -> bool {
        let mut queue = self.lock();
        if queue.front() == Some(&fault) {
            queue.pop_front();
            true
        } else {
            false
        }
    }
    /// Takes the next armed fault unless it is `fault` (which stays armed).
    pub fn take_unless(&self, fault: Fault) -> Option<Fault> {
        let mut queue = self.lock();
        if queue.front() == Some(&fault) {
            None
        } else {
            queue.pop_front()
        }
    }
    /// Disarms all faults.
    pub fn clear(&self) {
        self.lock().clear();
    }
    /// The armed faults, in order.
    pub fn pending(&self) -> Vec<Fault> {
        self.lock().iter().copied().collect()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Fault>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
