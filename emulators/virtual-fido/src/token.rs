//! The token: one authenticator, its button, its faults and its plug, shared by every
//! transport connection and the control socket.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::authenticator::{AttestationMode, Authenticator};
use crate::ctaphid::engine::Backend;
use crate::faults::{Fault, Faults};
use crate::presence::{Interaction, Presence, PresencePolicy};
use crate::state::{StateError, Store, TokenState};

/// A summary of the token for the control socket's `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenStatus {
    /// Whether the token is plugged in.
    pub plugged: bool,
    /// The presence policy.
    pub presence: PresencePolicy,
    /// A request is waiting for presence now.
    pub waiting_for_presence: bool,
    /// A touch is pending (not yet consumed).
    pub touch_pending: bool,
    /// Signature counter.
    pub counter: u32,
    /// Credentials stored (discoverable and not).
    pub credentials: usize,
    /// Discoverable credentials.
    pub resident_credentials: usize,
    /// A PIN is set.
    pub pin_set: bool,
    /// PIN retries left.
    pub pin_retries: u8,
    /// AAGUID, hex.
    pub aaguid: String,
    /// Armed faults, in order.
    pub faults: Vec<Fault>,
    /// CTAP2 and U2F requests handled since start.
    pub requests: u64,
    /// Attestation mode.
    pub attestation: AttestationMode,
}

/// Called with the new state when the token is plugged or unplugged.
type PlugListener = Box<dyn Fn(bool) + Send + Sync>;

/// The shared token.
pub struct Token {
    auth: Mutex<Authenticator>,
    presence: Presence,
    faults: Faults,
    plugged: AtomicBool,
    requests: AtomicU64,
    power_cycle_pending: AtomicBool,
    plug_listeners: Mutex<Vec<PlugListener>>,
    attestation: AttestationMode,
    /// Last known persistent summary, readable while a request holds the authenticator.
    cached: Mutex<(u32, usize, usize, bool, u8, [u8; 16])>,
}

/// Token settings.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Initial presence policy.
    pub presence: PresencePolicy,
    /// How long `timeout` and `wait-for-touch` wait before giving up.
    pub presence_timeout: Duration,
    /// Attestation mode.
    pub attestation: AttestationMode,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            presence: PresencePolicy::Accept,
            presence_timeout: Duration::from_secs(30),
            attestation: AttestationMode::Packed,
        }
    }
}

impl Token {
    /// Opens a token over `store`.
    pub fn open(store: Box<dyn Store>, config: TokenConfig) -> Result<Arc<Self>, StateError> {
        let auth = Authenticator::open(store, config.attestation)?;
        let token = Arc::new(Self {
            auth: Mutex::new(auth),
            presence: Presence::new(config.presence, config.presence_timeout),
            faults: Faults::default(),
            plugged: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            power_cycle_pending: AtomicBool::new(false),
            plug_listeners: Mutex::new(Vec::new()),
            attestation: config.attestation,
            cached: Mutex::new((0, 0, 0, false, 0, [0; 16])),
        });
        token.refresh_cache(&token.lock_auth());
        Ok(token)
    }

    /// An in-memory token (tests, benches).
    pub fn in_memory(config: TokenConfig) -> Arc<Self> {
        Self::open(Box::new(crate::state::MemoryStore), config)
            .expect("an in-memory store cannot fail")
    }

    fn lock_auth(&self) -> MutexGuard<'_, Authenticator> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_cache(&self, auth: &Authenticator) {
        let s = auth.state();
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = (
            s.counter,
            s.credentials.len(),
            s.credentials.iter().filter(|c| c.discoverable).count(),
            s.pin_hash.is_some(),
            s.pin_retries,
            s.aaguid,
        );
    }

    /// The button.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// The fault queue.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Whether the token is plugged in.
    pub fn plugged(&self) -> bool {
        self.plugged.load(Ordering::SeqCst)
    }

    /// Plugs or unplugs the token. Unplugging forgets volatile state (PIN token, key
    /// agreement) as a real power loss does, once the current request ends.
    pub fn set_plugged(&self, plugged: bool) {
        let was = self.plugged.swap(plugged, Ordering::SeqCst);
        if was && !plugged {
            // Never wait for a request in progress: it is cancelled by its connection closing,
            // and the power cycle happens before the next request.
            self.power_cycle_pending.store(true, Ordering::SeqCst);
        }
        if was != plugged {
            for listener in self
                .plug_listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                listener(plugged);
            }
        }
    }

    /// Registers `listener`, called with the new state on every plug or unplug (transports
    /// that disconnect at the USB level, such as usb-redir, follow the token this way).
    pub fn on_plug_change(&self, listener: impl Fn(bool) + Send + Sync + 'static) {
        self.plug_listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(listener));
    }

    /// Runs `f` on the authenticator (waits for a request in progress), then refreshes the
    /// status summary.
    pub fn with_authenticator<T>(&self, f: impl FnOnce(&mut Authenticator) -> T) -> T {
        let mut auth = self.lock_auth();
        if self.power_cycle_pending.swap(false, Ordering::SeqCst) {
            auth.power_cycle();
        }
        let out = f(&mut auth);
        self.refresh_cache(&auth);
        out
    }

    /// The persistent state (waits for a request in progress).
    pub fn export_state(&self) -> TokenState {
        self.with_authenticator(|a| a.state().clone())
    }

    /// Replaces the persistent state and saves it.
    pub fn import_state(&self, state: TokenState) -> Result<(), StateError> {
        self.with_authenticator(|a| a.replace_state(state))
    }

    /// Sets the signature counter and saves it.
    pub fn set_counter(&self, counter: u32) -> Result<(), StateError> {
        self.with_authenticator(|a| {
            let mut state = a.state().clone();
            state.counter = counter;
            a.replace_state(state)
        })
    }

    /// A status summary; never waits for a request in progress.
    pub fn status(&self) -> TokenStatus {
        let (counter, credentials, resident_credentials, pin_set, pin_retries, aaguid) =
            *self.cached.lock().unwrap_or_else(|e| e.into_inner());
        TokenStatus {
            plugged: self.plugged(),
            presence: self.presence.policy(),
            waiting_for_presence: self.presence.waiting(),
            touch_pending: self.presence.touch_pending(),
            counter,
            credentials,
            resident_credentials,
            pin_set,
            pin_retries,
            aaguid: hex::encode(aaguid),
            faults: self.faults.pending(),
            requests: self.requests.load(Ordering::SeqCst),
            attestation: self.attestation,
        }
    }
}

impl Backend for Token {
    fn cbor(&self, request: &[u8], io: &dyn Interaction) -> Vec<u8> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        // Only an assertion (authenticatorGetAssertion, 0x02) takes a `wrong-rp` fault.
        let wrong_rp = request.first() == Some(&0x02) && self.faults.take_if(Fault::WrongRp);
        self.with_authenticator(|a| {
            if wrong_rp {
                a.lie_about_rp_once();
            }
            a.handle_cbor(request, &self.presence, io)
        })
    }

    fn msg(&self, apdu: &[u8], _io: &dyn Interaction) -> Vec<u8> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.with_authenticator(|a| a.handle_apdu(apdu, &self.presence))
    }

    fn next_fault(&self) -> Option<Fault> {
        // Transport faults only: a `wrong-rp` waits for the next assertion.
        self.faults.take_unless(Fault::WrongRp)
    }

    fn wink(&self) {
        tracing::info!("wink");
    }
}
