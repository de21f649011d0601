//! A thin, typed layer over libcryptsetup for one LUKS2 header: load, UUID, header JSON,
//! keyslots, tokens, volume key. Works on image files (no device-mapper) for everything except
//! activation.

use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptReencrypt, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{
    CryptReencryptDirectionInfo, CryptReencryptModeInfo, EncryptionFormat,
};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsReencrypt, CryptPbkdfType, Either,
    LibcryptErr, TokenInput,
};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::check::parse_uuid;
use crate::error::{Error, Result};
use crate::secret::VolumeKey;
use crate::token::MAX_KEYSLOTS;

/// An open LUKS2 header (on a device, an image file or a detached header file).
pub struct Luks2 {
    dev: CryptDevice,
    path: PathBuf,
}

impl std::fmt::Debug for Luks2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Luks2").field("path", &self.path).finish()
    }
}

pub(crate) fn is_eperm(e: &LibcryptErr) -> bool {
    matches!(e, LibcryptErr::IOError(io) if io.raw_os_error() == Some(libc_eperm()))
}

const fn libc_eperm() -> i32 {
    1
}

impl Luks2 {
    pub(crate) fn fail(&self, op: &'static str) -> impl Fn(LibcryptErr) -> Error + '_ {
        move |e| Error::Cryptsetup {
            op,
            device: self.path.clone(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn state(&self, reason: impl Into<String>) -> Error {
        Error::State {
            device: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// A context on `path` without loading anything (for formatting).
    pub(crate) fn init(path: &Path) -> Result<Self> {
        let dev = CryptInit::init(path).map_err(|e| Error::Cryptsetup {
            op: "opening the device",
            device: path.into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            dev,
            path: path.into(),
        })
    }

    /// Wraps a context libcryptsetup already loaded (e.g. by mapping name).
    pub(crate) fn from_device(dev: CryptDevice, path: PathBuf) -> Self {
        Self { dev, path }
    }

    /// Opens and loads the LUKS2 header at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut me = Self::init(path)?;
        let r = me
            .dev
            .context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None);
        r.map_err(me.fail("loading the LUKS2 header"))?;
        Ok(me)
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn device(&mut self) -> &mut CryptDevice {
        &mut self.dev
    }

    /// The header's UUID.
    pub fn uuid(&mut self) -> Result<[u8; 16]> {
        let text = self
            .dev
            .status_handle()
            .get_uuid()
            .map_err(|e| Error::Cryptsetup {
                op: "reading the UUID",
                device: self.path.clone(),
                reason: e.to_string(),
            })?
            .to_string();
        parse_uuid(&text).ok_or_else(|| self.state("the header UUID is not a UUID"))
    }

    /// The header's metadata JSON (keyslots, tokens, segments, digests, config).
    pub fn header_json(&mut self) -> Result<Value> {
        let r = self.dev.status_handle().dump_json();
        r.map_err(self.fail("reading the header JSON"))
    }

    /// The data cipher as `cipher-mode`.
    pub fn cipher_spec(&mut self) -> Result<String> {
        let c = self.dev.status_handle().get_cipher();
        let c = c.map_err(self.fail("reading the cipher"))?;
        let m = self.dev.status_handle().get_cipher_mode();
        let m = m.map_err(self.fail("reading the cipher mode"))?;
        Ok(format!("{c}-{m}"))
    }

    /// Checks that `keyslot` exists in the header as an active `luks2` keyslot (never trusting
    /// a token's word for it).
    pub fn require_luks2_keyslot(&mut self, keyslot: u32) -> Result<()> {
        if keyslot >= MAX_KEYSLOTS {
            return Err(self.state(format!("keyslot {keyslot} is out of range")));
        }
        let json = self.header_json()?;
        match json["keyslots"][keyslot.to_string()]["type"].as_str() {
            Some("luks2") => Ok(()),
            Some(other) => Err(self.state(format!(
                "keyslot {keyslot} is of type `{}`, not luks2",
                other.chars().take(32).collect::<String>()
            ))),
            None => Err(self.state(format!("keyslot {keyslot} does not exist"))),
        }
    }

    /// Active tokens of type `kind`, as `(token id, JSON)`.
    pub fn tokens_of_type(&mut self, kind: &str) -> Result<Vec<(u32, Value)>> {
        let json = self.header_json()?;
        let mut out = Vec::new();
        if let Some(tokens) = json["tokens"].as_object() {
            for (id, token) in tokens {
                if token["type"].as_str() == Some(kind) {
                    let id = id
                        .parse::<u32>()
                        .map_err(|_| self.state("a token id is not a number"))?;
                    out.push((id, token.clone()));
                }
            }
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Adds a token (`None`) or replaces token `id`; returns the token id.
    pub(crate) fn set_token(&mut self, id: Option<u32>, json: &Value) -> Result<u32> {
        let input = match id {
            Some(id) => TokenInput::ReplaceToken(id, json),
            None => TokenInput::AddToken(json),
        };
        let r = self.dev.token_handle().json_set(input);
        r.map_err(self.fail("writing a token"))
    }

    /// Sets the PBKDF for keyslots added from now on.
    pub(crate) fn set_pbkdf(&mut self, pbkdf: &CryptPbkdfType) -> Result<()> {
        let r = self.dev.settings_handle().set_pbkdf_type(pbkdf);
        r.map_err(self.fail("setting the PBKDF"))
    }

    /// Adds a keyslot for `passphrase` over `volume_key` with the PBKDF set before.
    pub(crate) fn add_keyslot(&mut self, volume_key: &VolumeKey, passphrase: &[u8]) -> Result<u32> {
        let r = self.dev.keyslot_handle().add_by_key(
            None,
            Some(Either::Left(volume_key.expose_secret())),
            passphrase,
            CryptVolumeKey::empty(),
        );
        r.map_err(self.fail("adding a keyslot"))
    }

    /// Adds a keyslot for `passphrase` over a volume key that no data segment uses yet (the
    /// target key of a re-encryption); reuses the key's digest if one exists.
    pub(crate) fn add_unbound_keyslot(
        &mut self,
        volume_key: &VolumeKey,
        passphrase: &[u8],
    ) -> Result<u32> {
        let r = self.dev.keyslot_handle().add_by_key(
            None,
            Some(Either::Left(volume_key.expose_secret())),
            passphrase,
            CryptVolumeKey::NO_SEGMENT | CryptVolumeKey::DIGEST_REUSE,
        );
        r.map_err(self.fail("adding a keyslot for the new volume key"))
    }

    /// Whether the header carries a (possibly interrupted) re-encryption.
    pub(crate) fn reencrypt_in_progress(&mut self) -> Result<bool> {
        let json = self.header_json()?;
        Ok(json["config"]["requirements"]["mandatory"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r.as_str().is_some_and(|r| r.contains("reencrypt"))))
    }

    /// Re-encrypts the data segment from the key of `keyslot_old` to the key of `keyslot_new`
    /// (both opened by `passphrase`), keeping cipher and sector size, with checksum
    /// resilience: online on the active mapping `name`, or offline when `None`. With `resume`,
    /// continues an interrupted re-encryption instead (the keyslots are then found by the
    /// passphrase). `progress(done, total)` is called as the data advances; returning `false`
    /// stops the re-encryption cleanly, to be resumed later. libcryptsetup removes the keyslots
    /// of the old key when it finishes.
    pub(crate) fn reencrypt(
        &mut self,
        name: Option<&str>,
        passphrase: &[u8],
        keyslots: Option<(u32, u32)>,
        resume: bool,
        progress: Option<&mut dyn FnMut(u64, u64) -> bool>,
    ) -> Result<()> {
        let json = self.header_json()?;
        let sector_size = json["segments"]
            .as_object()
            .and_then(|s| s.values().find_map(|seg| seg["sector_size"].as_u64()))
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| self.state("the data segment has no sector size"))?;
        let cipher = self.cipher_spec()?;
        let (c, m) = cipher
            .split_once('-')
            .ok_or_else(|| self.state("the cipher has no mode"))?;
        let params = CryptParamsReencrypt {
            mode: CryptReencryptModeInfo::Reencrypt,
            direction: CryptReencryptDirectionInfo::Forward,
            resilience: "checksum".into(),
            hash: "sha256".into(),
            data_shift: 0,
            max_hotzone_size: 0,
            device_size: 0,
            luks2: Some(CryptParamsLuks2 {
                pbkdf: Some(crate::profile::minimal_pbkdf()),
                integrity: None,
                integrity_params: None,
                data_alignment: 0,
                data_device: None,
                sector_size,
                label: None,
                subsystem: None,
            }),
            flags: if resume {
                CryptReencrypt::RESUME_ONLY
            } else {
                CryptReencrypt::empty()
            },
        };
        let r = self.dev.reencrypt_handle().reencrypt_init_by_passphrase(
            name,
            passphrase,
            keyslots.map(|k| k.0),
            keyslots.map(|k| k.1),
            (!resume).then_some((c, m)),
            params,
        );
        r.map_err(self.fail(if resume {
            "resuming the re-encryption"
        } else {
            "starting the re-encryption"
        }))?;
        type Callback<'a> = &'a mut dyn FnMut(u64, u64) -> bool;
        unsafe extern "C" fn trampoline(
            size: u64,
            offset: u64,
            usrptr: *mut std::ffi::c_void,
        ) -> libcryptsetup_rs::c_int {
            // SAFETY: usrptr is the `Callback` passed to reencrypt2 below, alive for the call.
            let f = unsafe { &mut *usrptr.cast::<Callback<'_>>() };
            if (*f)(offset, size) { 0 } else { 1 }
        }
        let r = match progress {
            Some(mut f) => self
                .dev
                .reencrypt_handle()
                .reencrypt2::<Callback<'_>>(Some(trampoline), Some(&mut f)),
            None => self.dev.reencrypt_handle().reencrypt2::<()>(None, None),
        };
        r.map_err(self.fail("re-encrypting the data"))
    }

    /// Removes token `id`.
    pub(crate) fn remove_token(&mut self, id: u32) -> Result<()> {
        let r = self
            .dev
            .token_handle()
            .json_set(TokenInput::RemoveToken(id));
        r.map(|_| ()).map_err(self.fail("removing a token"))
    }

    /// Whether `keyslot` belongs to the key the data segment uses now (its digest lists
    /// segment 0); `false` for an unbound keyslot or one that does not exist.
    pub(crate) fn keyslot_bound_to_data(&mut self, keyslot: u32) -> Result<bool> {
        let json = self.header_json()?;
        let ks = keyslot.to_string();
        let has = |v: &Value, s: &str| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(s)))
        };
        Ok(json["digests"]
            .as_object()
            .into_iter()
            .flatten()
            .any(|(_, d)| has(&d["keyslots"], &ks) && has(&d["segments"], "0")))
    }

    /// Destroys a keyslot.
    pub(crate) fn destroy_keyslot(&mut self, keyslot: u32) -> Result<()> {
        let r = self.dev.keyslot_handle().destroy(keyslot);
        r.map_err(self.fail("destroying a keyslot"))
    }

    /// Checks `volume_key` against the header's digest.
    pub(crate) fn verify_volume_key(&mut self, volume_key: &VolumeKey) -> Result<()> {
        let r = self
            .dev
            .volume_key_handle()
            .verify(volume_key.expose_secret());
        r.map_err(|_| self.state("the volume key does not match this header"))
    }

    /// Opens `keyslot` with `passphrase` without activating anything (`--test-passphrase`).
    /// `Ok(false)` if the passphrase is wrong.
    pub fn test_passphrase(&mut self, keyslot: u32, passphrase: &[u8]) -> Result<bool> {
        let r = self.dev.activate_handle().activate_by_passphrase(
            None,
            Some(keyslot),
            passphrase,
            CryptActivate::empty(),
        );
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_eperm(&e) => Ok(false),
            Err(e) => Err(self.fail("testing a passphrase")(e)),
        }
    }

    /// The volume key, unlocked from `keyslot` with `passphrase` (`None` if it is wrong).
    pub(crate) fn volume_key(
        &mut self,
        keyslot: u32,
        passphrase: &[u8],
    ) -> Result<Option<VolumeKey>> {
        let size = usize::try_from(self.dev.status_handle().get_volume_key_size())
            .map_err(|_| self.state("no volume key size"))?;
        let mut buf = Zeroizing::new(vec![0u8; size]);
        let r = self
            .dev
            .volume_key_handle()
            .get(Some(keyslot), &mut buf, Some(passphrase));
        match r {
            Ok((_, n)) => {
                buf.truncate(n);
                Ok(Some(VolumeKey::from_vec(buf)))
            }
            Err(e) if is_eperm(&e) => Ok(None),
            Err(e) => Err(self.fail("unlocking the volume key")(e)),
        }
    }

    /// Activates the volume as `/dev/mapper/NAME` with `volume_key` (needs device-mapper).
    pub(crate) fn activate_with_key(&mut self, name: &str, volume_key: &VolumeKey) -> Result<()> {
        let r = self.dev.activate_handle().activate_by_volume_key(
            Some(name),
            Some(volume_key.expose_secret()),
            CryptActivate::empty(),
        );
        r.map_err(self.fail("activating the volume"))
    }
}

/// Discards libcryptsetup's log messages (by default it prints errors such as "No key available
/// with this passphrase." to stderr). For keybound-init, whose console shows one line of its
/// own. libcryptsetup never logs key material either way.
pub fn silence_libcryptsetup_log() {
    unsafe extern "C" fn discard(
        _level: libcryptsetup_rs::c_int,
        _msg: *const std::ffi::c_char,
        _usrptr: *mut std::ffi::c_void,
    ) {
    }
    libcryptsetup_rs::set_log_callback::<()>(Some(discard), None);
}
