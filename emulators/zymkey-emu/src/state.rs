//! What survives a power cycle, as one JSON document (`state.json` in the state directory).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::binding::{Fingerprint, Mode};
use crate::keys::ModuleSecret;

/// State file name inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Current state format.
pub const STATE_FORMAT: u32 = 1;

/// One perimeter channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// `ZK_PERIMETER_EVENT_ACTION_*` flags.
    pub actions: u32,
    /// First breach, seconds since the epoch; 0 = none since the last clear.
    pub first_breach: u32,
}

/// The persistent state of one module.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    /// Format version of this document.
    pub format: u32,
    /// Serial number.
    pub serial: String,
    /// Model string.
    pub model: String,
    /// Firmware version string.
    pub firmware: String,
    /// The module secret; `None` once self-destructed (for good).
    #[serde(with = "secret_hex")]
    pub secret: Option<ModuleSecret>,
    /// When it self-destructed.
    pub destroyed_at: Option<u64>,
    /// Binding mode.
    pub mode: Mode,
    /// The bound fingerprint.
    #[serde(with = "fingerprint_hex")]
    pub bound: Option<Fingerprint>,
    /// I2C address.
    pub i2c_addr: u8,
    /// Perimeter channels 0 and 1.
    pub perimeter: [Channel; 2],
    /// Tap sensitivity per axis, percent.
    pub tap_sensitivity: [f32; 3],
    /// Backup battery present.
    pub battery_present: bool,
}

impl Persisted {
    /// A factory-fresh module with a new secret and serial.
    pub fn fresh() -> Self {
        let mut id = [0u8; 4];
        getrandom::fill(&mut id).expect("the OS random number generator failed");
        Self {
            format: STATE_FORMAT,
            serial: format!("ZK4-{}", hex::encode_upper(id)),
            model: "ZYMKEY4".into(),
            firmware: format!("keybound-zymkey-emu {}", env!("CARGO_PKG_VERSION")),
            secret: Some(ModuleSecret::generate()),
            destroyed_at: None,
            mode: Mode::Developer,
            bound: None,
            i2c_addr: 0x30,
            perimeter: [Channel::default(); 2],
            tap_sensitivity: [50.0; 3],
            battery_present: true,
        }
    }

    /// Serialises (the result holds the secret: zeroised on drop).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(serde_json::to_vec_pretty(self).expect("state serialises"))
    }

    /// Parses and checks the format version.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let p: Persisted = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if p.format != STATE_FORMAT {
            return Err(format!("unsupported state format {}", p.format));
        }
        Ok(p)
    }
}

mod secret_hex {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        v: &Option<ModuleSecret>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(secret) => s.serialize_some(&*Zeroizing::new(hex::encode(secret.expose()))),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<ModuleSecret>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)?.map(Zeroizing::new) else {
            return Ok(None);
        };
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.as_bytes(), &mut *bytes).map_err(serde::de::Error::custom)?;
        Ok(Some(ModuleSecret::from_bytes(*bytes)))
    }
}

mod fingerprint_hex {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        v: &Option<Fingerprint>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(f) => s.serialize_some(&hex::encode(f.0)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Fingerprint>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.as_bytes(), &mut bytes).map_err(serde::de::Error::custom)?;
        Ok(Some(Fingerprint(bytes)))
    }
}
