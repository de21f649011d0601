//! The authentication flow, independent of libpam so it can be tested in process.
//!
//! 1. Resolve the user's credentials (authfile checks; an unsafe or unreadable authfile is a
//!    failure, with or without `nouserok`).
//! 2. Probe every device silently (no presence) for each credential — a user without
//!    credentials gets a random dummy credential probed the same way (no oracle).
//! 3. No device holds a credential → failure: no cue, no prompt, no message.
//! 4. Otherwise: cue (if asked), PIN prompt (if required), getAssertion with a fresh random
//!    client-data hash, [`crate::verify`] checks, the counter store. All within `timeout=`.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::authfile::{self, Credential, KeyHandle};
use crate::counters::{CounterStore, CredentialKey, Verdict};
use crate::fido::{AssertRequest, Device, DeviceSource, Opt};
use crate::log::Logger;
use crate::options::{DEFAULT_AUTHFILE, Options};
use crate::safe_file::{self, SafeFileError};
use crate::verify::{self, Requirements};

/// Largest authfile read.
pub const MAX_AUTHFILE: u64 = 1 << 20;

/// The conversation failed or was aborted by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("conversation failed or aborted")]
pub struct ConvError;

/// The PAM conversation, as the flow needs it.
pub trait Conversation {
    /// Shows an informational message (PAM_TEXT_INFO).
    fn info(&mut self, msg: &str) -> Result<(), ConvError>;
    /// Shows an error message (PAM_ERROR_MSG).
    fn error(&mut self, msg: &str) -> Result<(), ConvError>;
    /// Asks for a secret without echo (PAM_PROMPT_ECHO_OFF).
    fn secret(&mut self, prompt: &str) -> Result<Zeroizing<String>, ConvError>;
}

/// The result of one authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The token proved possession of an enrolled credential.
    Success,
    /// `nouserok` and the user has no credentials.
    Ignore,
    /// Denied; the reason is for logs only, never shown to the user.
    Denied(String),
}

/// A user as the flow needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// uid.
    pub uid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Looks a user up in the password database.
pub fn lookup_user(name: &str) -> Option<UserInfo> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: an all-zero passwd is a valid out-parameter value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives the use of pw's strings.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into buf and is NUL-terminated.
    let home = unsafe { CStr::from_ptr(pw.pw_dir) };
    Some(UserInfo {
        uid: pw.pw_uid,
        home: PathBuf::from(std::ffi::OsStr::from_bytes(home.to_bytes())),
    })
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The authfile path for `user`, and whether it is per-user (a missing per-user file means "no
/// credentials"; a missing shared file is an error).
pub fn authfile_path(
    opts: &Options,
    user: &str,
    info: Option<&UserInfo>,
) -> Option<(PathBuf, bool)> {
    let raw = opts.authfile.clone();
    let per_user_spec = raw.as_deref().is_none_or(|a| {
        !a.starts_with('/') || (opts.expand && (a.contains("%u") || a.contains("%h")))
    });
    let mut text = raw.unwrap_or_else(|| DEFAULT_AUTHFILE.to_owned());
    if opts.expand {
        if text.contains("%h") {
            let home = info?.home.to_str()?.to_owned();
            text = text.replace("%h", &home);
        }
        if user.contains('/') || user == ".." || user == "." {
            return None;
        }
        text = text.replace("%u", user);
    }
    let path = if text.starts_with('/') {
        PathBuf::from(text)
    } else {
        info?.home.join(text)
    };
    Some((path, per_user_spec))
}

/// The flow, configured.
#[derive(Debug)]
pub struct Authenticator {
    opts: Options,
    devices: DeviceSource,
    log: Logger,
    origin: String,
    silent: bool,
}

struct Match {
    device_path: CString,
    credential: usize,
}

impl Authenticator {
    /// A flow over `devices` with `opts`, logging to `log`.
    pub fn new(opts: Options, devices: DeviceSource, log: Logger) -> Self {
        let origin = opts
            .origin
            .clone()
            .unwrap_or_else(|| format!("pam://{}", hostname()));
        Self {
            opts,
            devices,
            log,
            origin,
            silent: false,
        }
    }

    /// `PAM_SILENT`: no informational messages (the cue); prompts a credential needs (the PIN)
    /// are still asked.
    pub fn silent(mut self, silent: bool) -> Self {
        self.silent = silent;
        self
    }

    fn rp_id(&self, c: &Credential) -> String {
        if c.old_format {
            self.opts
                .appid
                .clone()
                .unwrap_or_else(|| self.origin.clone())
        } else {
            self.origin.clone()
        }
    }

    /// Loads `user`'s credentials: `Ok(None)` when they have none, `Err` when that cannot be
    /// known safely (failure, never a skip).
    pub fn credentials(&self, user: &str) -> Result<Option<Vec<Credential>>, String> {
        let info = lookup_user(user);
        let Some((path, per_user)) = authfile_path(&self.opts, user, info.as_ref()) else {
            return if info.is_none() {
                Ok(None)
            } else {
                Err("authfile path cannot be built for this user".into())
            };
        };
        // A per-user file may be owned by its user; a shared one only by root (a user owning
        // the shared file could enrol a token for someone else).
        let mut owners = vec![0];
        if per_user && let Some(i) = &info {
            owners.push(i.uid);
        }
        match safe_file::read_text(&path, &owners, MAX_AUTHFILE) {
            Ok(text) => match authfile::find_user(&text, user) {
                Ok(Some(e)) => Ok(Some(e.credentials)),
                Ok(None) => Ok(None),
                Err(e) => Err(format!("{}: entry of user {user}: {e}", path.display())),
            },
            Err(SafeFileError::NotFound(_)) if per_user => Ok(None),
            Err(e) => Err(format!("authfile refused: {e}")),
        }
    }

    fn remaining(deadline: Instant) -> Option<Duration> {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    fn device_timeout(&self, deadline: Instant) -> Option<Duration> {
        // Planted bug timeout-ignored: caught by scenario login/presence-denied-timeout-pulled.
        #[cfg(keybound_mutant = "timeout-ignored")]
        {
            let _ = deadline;
            return None;
        }
        #[allow(unreachable_code)]
        Some(Self::remaining(deadline).unwrap_or(Duration::from_millis(1)))
    }

    fn open(&self, path: &CStr, deadline: Instant) -> Option<Device> {
        match self.devices.open(path, self.device_timeout(deadline)) {
            Ok(d) => Some(d),
            Err(e) => {
                self.log
                    .debug(&format!("{}: open failed: {e}", path.to_string_lossy()));
                None
            }
        }
    }

    /// Silent probe: does the device hold this credential? (pam_u2f's rule: FIDO_OK from a CTAP2
    /// device, "presence required" from a U2F one.) libfido2's timeout bounds each call, not the
    /// login: it is set again to what is left, so a stalling device cannot take it twice.
    fn probe(&self, dev: &mut Device, rp_id: &str, handle: &KeyHandle, deadline: Instant) -> bool {
        if Self::remaining(deadline).is_none()
            || dev.set_timeout(self.device_timeout(deadline)).is_err()
        {
            return false;
        }
        let mut cdh = [0u8; 32];
        if getrandom::fill(&mut cdh).is_err() {
            return false;
        }
        let allow = match handle {
            KeyHandle::Id(id) => Some(id.as_slice()),
            KeyHandle::Resident if dev.is_fido2() => None,
            KeyHandle::Resident => return false,
        };
        let req = AssertRequest {
            rp_id,
            client_data_hash: cdh,
            allow,
            up: Opt::False,
            uv: Opt::Omit,
        };
        match dev.get_assert(&req, None) {
            Ok(_) => dev.is_fido2(),
            Err(e) => !dev.is_fido2() && e.is_presence_required(),
        }
    }

    /// Authenticates `user`.
    pub fn authenticate(&self, user: &str, conv: &mut dyn Conversation) -> AuthOutcome {
        let deadline = Instant::now() + self.opts.timeout;
        // Planted bug cue-without-token: caught by scenario login/no-token-no-oracle.
        #[cfg(keybound_mutant = "cue-without-token")]
        if self.opts.cue {
            let _ = conv.info(&self.opts.cue_prompt);
        }
        let creds = self.credentials(user);
        if let Err(e) = &creds {
            self.log.error(e);
        }
        // Users without credentials (or whose credentials cannot be read) are probed with a
        // random dummy credential: the same device work, so timing says nothing about them.
        let probe_set: Vec<Credential> = match &creds {
            Ok(Some(c)) => c.clone(),
            _ => vec![dummy_credential()],
        };
        let matches = self.find_matches(&probe_set, deadline);
        let creds = match creds {
            Err(e) => return AuthOutcome::Denied(e),
            Ok(None) if self.opts.nouserok => {
                self.log
                    .debug(&format!("user {user} has no credentials; nouserok"));
                return AuthOutcome::Ignore;
            }
            Ok(None) => {
                return AuthOutcome::Denied(format!("user {user} has no credentials"));
            }
            Ok(Some(c)) => c,
        };
        if matches.is_empty() {
            // Planted bug no-token-message: caught by scenario login/no-token-no-oracle.
            #[cfg(keybound_mutant = "no-token-message")]
            let _ = conv.error("No token found.");
            return AuthOutcome::Denied("no device holds an enrolled credential".into());
        }
        #[cfg(not(keybound_mutant = "cue-without-token"))]
        if self.opts.cue && !self.silent && conv.info(&self.opts.cue_prompt).is_err() {
            return AuthOutcome::Denied("conversation aborted at the cue".into());
        }
        for m in matches {
            let c = &creds[m.credential];
            match self.assert_one(user, &m, c, conv, deadline) {
                Ok(()) => return AuthOutcome::Success,
                Err(Stop::Abort(why)) => return AuthOutcome::Denied(why),
                Err(Stop::Next(why)) => self.log.error(&format!("user {user}: {why}")),
            }
        }
        AuthOutcome::Denied("no valid assertion".into())
    }

    fn find_matches(&self, creds: &[Credential], deadline: Instant) -> Vec<Match> {
        let paths = match self.devices.paths(self.opts.max_devices) {
            Ok(p) => p,
            Err(e) => {
                self.log.error(&format!("device discovery failed: {e}"));
                return Vec::new();
            }
        };
        self.log.debug(&format!(
            "probing {} device(s) for {} credential(s)",
            paths.len(),
            creds.len()
        ));
        let mut out = Vec::new();
        for path in paths {
            if Self::remaining(deadline).is_none() {
                self.log.error("timeout while probing devices");
                break;
            }
            let Some(mut dev) = self.open(&path, deadline) else {
                continue;
            };
            for (i, c) in creds.iter().enumerate() {
                if self.probe(&mut dev, &self.rp_id(c), &c.key_handle, deadline) {
                    out.push(Match {
                        device_path: path.clone(),
                        credential: i,
                    });
                }
            }
        }
        out
    }

    fn assert_one(
        &self,
        user: &str,
        m: &Match,
        c: &Credential,
        conv: &mut dyn Conversation,
        deadline: Instant,
    ) -> Result<(), Stop> {
        let presence = self.opts.userpresence.resolve(c.options.presence);
        let uv = self.opts.userverification.resolve(c.options.verification);
        let pin_required = self.opts.pinverification.resolve(c.options.pin);
        // The PIN as a NUL-terminated byte buffer, wiped on drop.
        let pin: Option<Zeroizing<Vec<u8>>> = if pin_required {
            let p = conv
                .secret("Please enter the PIN: ")
                .map_err(|_| Stop::Abort("conversation aborted at the PIN prompt".into()))?;
            if p.as_bytes().contains(&0) {
                return Err(Stop::Abort("PIN contains NUL".into()));
            }
            let mut buf = Zeroizing::new(Vec::with_capacity(p.len() + 1));
            buf.extend_from_slice(p.as_bytes());
            buf.push(0);
            Some(buf)
        } else {
            None
        };
        let pin_cstr = pin
            .as_deref()
            .and_then(|b| CStr::from_bytes_with_nul(b).ok());
        if Self::remaining(deadline).is_none() {
            return Err(Stop::Abort("timeout".into()));
        }
        let mut dev = self
            .open(&m.device_path, deadline)
            .ok_or_else(|| Stop::Next("device gone".into()))?;
        // Opening may have used part of the time: the assertion gets only what is left.
        if Self::remaining(deadline).is_none() {
            return Err(Stop::Abort("timeout".into()));
        }
        dev.set_timeout(self.device_timeout(deadline))
            .map_err(|e| Stop::Next(format!("setting the device timeout: {e}")))?;
        let rp_id = self.rp_id(c);
        let mut cdh = [0u8; 32];
        getrandom::fill(&mut cdh).map_err(|_| Stop::Abort("no randomness".into()))?;
        let req = AssertRequest {
            rp_id: &rp_id,
            client_data_hash: cdh,
            allow: match &c.key_handle {
                KeyHandle::Id(id) => Some(id),
                KeyHandle::Resident => None,
            },
            up: if presence { Opt::True } else { Opt::False },
            uv: if uv && !pin_required {
                Opt::True
            } else {
                Opt::Omit
            },
        };
        let started = Instant::now();
        let assertions = dev.get_assert(&req, pin_cstr).map_err(|e| {
            if Instant::now() >= deadline {
                Stop::Abort(format!("token did not answer within the timeout ({e})"))
            } else {
                Stop::Next(format!("getAssertion failed: {e}"))
            }
        })?;
        self.log
            .debug(&format!("getAssertion took {:?}", started.elapsed()));
        let requirements = Requirements {
            rp_id,
            presence,
            verification: uv || pin_required,
        };
        let mut last = String::from("no assertion returned");
        for a in assertions {
            let Some(ad) = verify::unwrap_cbor_bytes(&a.auth_data_cbor) else {
                last = "malformed authenticator data".into();
                continue;
            };
            if let KeyHandle::Id(id) = &c.key_handle
                && a.credential_id != *id
                && !a.credential_id.is_empty()
            {
                last = "assertion for another credential".into();
                continue;
            }
            match verify::verify_assertion(&c.public_key, &requirements, &cdh, ad, &a.signature) {
                Ok(parsed) => return self.check_counter(user, c, parsed.counter),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Stop::Next(last))
    }

    fn check_counter(&self, user: &str, c: &Credential, counter: u32) -> Result<(), Stop> {
        let store = CounterStore::new(&self.opts.state);
        let key = CredentialKey::of(&c.public_key);
        match store.check_and_record(&key, counter) {
            Ok(Verdict::Accepted) => {
                self.log.info(&format!(
                    "user {user}: token assertion accepted (counter {counter})"
                ));
                Ok(())
            }
            Ok(Verdict::PossibleClone {
                recorded,
                presented,
            }) => {
                let msg = format!(
                    "user {user}: POSSIBLE CLONED TOKEN: credential {} presented signature counter {presented}, recorded {recorded}; denied",
                    &key.as_str()[..16]
                );
                self.log.warning(&msg);
                Err(Stop::Abort(msg))
            }
            Err(e) => Err(Stop::Abort(format!("counter store unusable: {e}"))),
        }
    }
}

enum Stop {
    /// Try the next matching device.
    Next(String),
    /// Deny now.
    Abort(String),
}

fn dummy_credential() -> Credential {
    let mut id = vec![0u8; 64];
    let _ = getrandom::fill(&mut id);
    Credential {
        key_handle: KeyHandle::Id(id),
        public_key: crate::authfile::PublicKey::EdDsa([0; 32]),
        options: crate::authfile::CredentialOptions::default(),
        old_format: false,
    }
}
