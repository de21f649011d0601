//! The token's persistent state and where it is kept. Copying the state file clones the token:
//! same credentials, same counter, same PIN.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The state file's format version.
pub const STATE_VERSION: u32 = 1;
/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "token.json";
/// PIN retries after a reset or a correct PIN.
pub const MAX_PIN_RETRIES: u8 = 8;

/// Secret bytes (private keys, hmac-secret keys): zeroised on drop, redacted in `Debug`,
/// hex in the state file.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }
}

impl std::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(hex::encode(&self.0[..])))
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        hex::decode(&*s)
            .map(Self::new)
            .map_err(serde::de::Error::custom)
    }
}

/// The two CredRandom values of an hmac-secret credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredRandom {
    /// Used when the assertion has user verification.
    pub with_uv: SecretBytes,
    /// Used without user verification.
    pub without_uv: SecretBytes,
}

/// One credential (CTAP2 or U2F).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCredential {
    /// Credential id (U2F key handle).
    #[serde(with = "hex")]
    pub id: Vec<u8>,
    /// RP id (empty for U2F registrations, which only know the application hash).
    pub rp_id: String,
    /// SHA-256 of the RP id (U2F: the application parameter).
    #[serde(with = "hex")]
    pub rp_id_hash: [u8; 32],
    /// User handle.
    #[serde(with = "hex", default)]
    pub user_id: Vec<u8>,
    /// User name.
    #[serde(default)]
    pub user_name: Option<String>,
    /// User display name.
    #[serde(default)]
    pub user_display_name: Option<String>,
    /// COSE algorithm (-7 ES256, -8 EdDSA).
    pub alg: i64,
    /// The private key's secret bytes.
    pub private_key: SecretBytes,
    /// Discoverable (resident) credential.
    pub discoverable: bool,
    /// credProtect level, 1..=3.
    pub cred_protect: u8,
    /// hmac-secret keys, when the credential was made with hmac-secret.
    #[serde(default)]
    pub cred_random: Option<CredRandom>,
    /// Creation order (newest highest).
    pub created: u64,
    /// Made through CTAP1/U2F register.
    #[serde(default)]
    pub u2f: bool,
}

/// Everything the token remembers across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenState {
    /// Format version, [`STATE_VERSION`].
    pub version: u32,
    /// The model id reported in getInfo and attested credential data.
    #[serde(with = "hex")]
    pub aaguid: [u8; 16],
    /// The global signature counter.
    pub counter: u32,
    /// LEFT(SHA-256(PIN), 16), when a PIN is set.
    #[serde(default, with = "opt_hex16")]
    pub pin_hash: Option<[u8; 16]>,
    /// PIN retries left.
    pub pin_retries: u8,
    /// Credentials, oldest first.
    pub credentials: Vec<StoredCredential>,
    /// Next creation number.
    pub next_created: u64,
}

mod opt_hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<[u8; 16]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 16]>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => {
                let mut out = [0u8; 16];
                hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
                Ok(Some(out))
            }
        }
    }
}

impl TokenState {
    /// A factory-fresh token with a random AAGUID.
    pub fn fresh() -> Self {
        Self::fresh_with_aaguid(crate::crypto::random())
    }

    /// A factory-fresh token with the given AAGUID.
    pub fn fresh_with_aaguid(aaguid: [u8; 16]) -> Self {
        Self {
            version: STATE_VERSION,
            aaguid,
            counter: 0,
            pin_hash: None,
            pin_retries: MAX_PIN_RETRIES,
            credentials: Vec::new(),
            next_created: 0,
        }
    }

    /// Parses a state file, checking its version.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StateError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(StateError::Parse)?;
        if v.version != STATE_VERSION {
            return Err(StateError::Version(v.version));
        }
        serde_json::from_slice(bytes).map_err(StateError::Parse)
    }

    /// Serialises the state (pretty JSON).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(serde_json::to_vec_pretty(self).expect("the state always serialises"))
    }
}

/// Errors loading or saving state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file is not a valid state file.
    #[error("state file is not valid: {0}")]
    Parse(#[source] serde_json::Error),
    /// The file has a version this build does not read.
    #[error("state file version {0} is not supported (this build reads version {STATE_VERSION})")]
    Version(u32),
    /// The state directory failed.
    #[error(transparent)]
    Dir(#[from] daemon_kit::StateDirError),
}

/// Where the state lives.
pub trait Store: Send {
    /// Loads the state, `None` for a new token.
    fn load(&self) -> Result<Option<TokenState>, StateError>;
    /// Saves the state atomically.
    fn save(&self, state: &TokenState) -> Result<(), StateError>;
}

/// No persistence: for tests and benches.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn load(&self) -> Result<Option<TokenState>, StateError> {
        Ok(None)
    }
    fn save(&self, _: &TokenState) -> Result<(), StateError> {
        Ok(())
    }
}

/// `token.json` in a locked daemon-kit state directory, replaced atomically on every change.
#[derive(Debug)]
pub struct DirStore(pub daemon_kit::StateDir);

impl Store for DirStore {
    fn load(&self) -> Result<Option<TokenState>, StateError> {
        self.0
            .read(STATE_FILE)?
            .map(|bytes| TokenState::from_json(&bytes))
            .transpose()
    }
    fn save(&self, state: &TokenState) -> Result<(), StateError> {
        Ok(self.0.write_atomic(STATE_FILE, &state.to_json())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_other_versions_are_refused() {
        let mut s = TokenState::fresh();
        s.pin_hash = Some([9; 16]);
        s.credentials.push(StoredCredential {
            id: vec![1, 2, 3],
            rp_id: "example.org".into(),
            rp_id_hash: [4; 32],
            user_id: vec![5],
            user_name: Some("u".into()),
            user_display_name: None,
            alg: -7,
            private_key: SecretBytes::new(vec![6; 32]),
            discoverable: true,
            cred_protect: 2,
            cred_random: None,
            created: 0,
            u2f: false,
        });
        let json = s.to_json();
        let back = TokenState::from_json(&json).unwrap();
        assert!(
            !format!("{back:?}").contains("6, 6, 6"),
            "no key bytes in Debug"
        );
        assert_eq!(back.to_json(), json);
        let other = String::from_utf8(json.to_vec())
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            TokenState::from_json(other.as_bytes()),
            Err(StateError::Version(2))
        ));
        assert!(matches!(
            TokenState::from_json(b"{}"),
            Err(StateError::Parse(_))
        ));
    }

    #[test]
    fn the_dir_store_persists_across_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = TokenState::fresh();
        s.counter = 42;
        {
            let store = DirStore(daemon_kit::StateDir::open(tmp.path()).unwrap());
            assert!(store.load().unwrap().is_none());
            store.save(&s).unwrap();
        }
        let store = DirStore(daemon_kit::StateDir::open(tmp.path()).unwrap());
        assert_eq!(store.load().unwrap().unwrap().counter, 42);
    }
}
