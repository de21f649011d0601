//! The provisioning state keybound-init records on the boot partition while an in-place
//! encryption or a fresh formatting is under way, so that a power cut at any point resumes on the next boot.
//!
//! It holds the stage, the UUID the new LUKS2 header gets, and the temporary keyslot's
//! passphrase **locked by the Zymkey** (the card never holds it in clear: only this board's
//! module unlocks it). It is written atomically (temporary file, fsync, rename) before the
//! first write to root, and overwritten and removed once the temporary keyslot is destroyed.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The state's file name on the boot partition.
pub(crate) const STATE_FILE: &str = "keybound-provision.state";

/// How far provisioning got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// A fresh provisioning: root is being formatted and filled from the root image (its
    /// content is disposable until enrolment: a resume starts the formatting over).
    Formatting,
    /// The filesystem is shrunk and the in-place encryption started or is about to: root is
    /// plain ext4, or LUKS2 with the online-reencrypt requirement, or fully encrypted.
    Encrypting,
    /// The encryption finished; the Zymkey and recovery slots are being enrolled and the
    /// temporary keyslot destroyed.
    Enrolling,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Self::Formatting => "formatting",
            Self::Encrypting => "encrypting",
            Self::Enrolling => "enrolling",
        }
    }
}

/// The recorded state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct State {
    /// The stage reached.
    pub(crate) stage: Stage,
    /// The UUID given to the new LUKS2 header (a resume refuses any other volume).
    pub(crate) uuid: String,
    /// The temporary passphrase, locked by the Zymkey.
    pub(crate) locked_passphrase: Vec<u8>,
}

impl State {
    /// The file's text.
    pub(crate) fn to_text(&self) -> String {
        format!(
            "# keybound-init: provisioning under way; do not edit or remove.\n\
             # The temporary passphrase below is locked by this board's Zymkey.\n\
             version=1\nstage={}\nuuid={}\ntemporary={}\n",
            self.stage.name(),
            self.uuid,
            hex(&self.locked_passphrase)
        )
    }

    /// Parses the file strictly.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (mut version, mut stage, mut uuid, mut temporary) = (None, None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or("state line without '='".to_string())?;
            let slot = match key {
                "version" => &mut version,
                "stage" => &mut stage,
                "uuid" => &mut uuid,
                "temporary" => &mut temporary,
                other => return Err(format!("unknown state key {other}")),
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(format!("state key {key} given twice"));
            }
        }
        if version.as_deref() != Some("1") {
            return Err("state version is not 1".into());
        }
        let stage = match stage.as_deref() {
            Some("formatting") => Stage::Formatting,
            Some("encrypting") => Stage::Encrypting,
            Some("enrolling") => Stage::Enrolling,
            _ => return Err("state stage is not formatting, encrypting or enrolling".into()),
        };
        let uuid = uuid.ok_or("state has no uuid")?;
        if !is_uuid(&uuid) {
            return Err("state uuid is not a UUID".into());
        }
        let locked_passphrase = unhex(&temporary.ok_or("state has no temporary passphrase")?)
            .ok_or("state temporary passphrase is not hex")?;
        Ok(Self {
            stage,
            uuid,
            locked_passphrase,
        })
    }

    /// Reads the state from the boot partition mounted at `boot`; `None` if there is none.
    pub(crate) fn read(boot: &Path) -> Result<Option<Self>, String> {
        match std::fs::read_to_string(boot.join(STATE_FILE)) {
            Ok(text) => Self::parse(&text)
                .map(Some)
                .map_err(|e| format!("provisioning state refused: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading the provisioning state: {e}")),
        }
    }

    /// Writes the state atomically to the boot partition mounted at `boot`.
    pub(crate) fn write(&self, boot: &Path) -> Result<(), String> {
        let tmp = boot.join(format!("{STATE_FILE}.new"));
        let fail = |e: std::io::Error| format!("writing the provisioning state: {e}");
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(self.to_text().as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, path(boot)).map_err(fail)?;
        sync_dir(boot);
        Ok(())
    }
}

fn path(boot: &Path) -> PathBuf {
    boot.join(STATE_FILE)
}

/// Makes the change durable. On vfat, fsync of the directory does not write the directory
/// entries a rename or unlink changed (they are block-device buffers, not the directory's), so
/// a power cut could lose them: sync everything.
fn sync_dir(_dir: &Path) {
    nix::unistd::sync();
}

/// Overwrites and removes the state (after the temporary keyslot is destroyed).
pub(crate) fn remove(boot: &Path) -> Result<(), String> {
    let p = path(boot);
    let fail = |e: std::io::Error| format!("removing the provisioning state: {e}");
    match std::fs::metadata(&p) {
        Ok(m) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(fail)?;
            f.write_all(&vec![0u8; m.len() as usize]).map_err(fail)?;
            f.sync_all().map_err(fail)?;
            std::fs::remove_file(&p).map_err(fail)?;
            sync_dir(boot);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty()
        || !text.len().is_multiple_of(2)
        || !text.chars().all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `8-4-4-4-12` lowercase hex.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
}

/// A random (version 4) UUID from 16 random bytes.
pub(crate) fn uuid_from(bytes: &[u8; 16]) -> String {
    let mut b = *bytes;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_parses_strictly() {
        let state = State {
            stage: Stage::Encrypting,
            uuid: uuid_from(&[0xab; 16]),
            locked_passphrase: vec![1, 2, 3, 250],
        };
        assert!(is_uuid(&state.uuid), "{}", state.uuid);
        assert_eq!(State::parse(&state.to_text()).unwrap(), state);
        let text = state.to_text();
        for bad in [
            text.replace("stage=encrypting", "stage=done"),
            text.replace("version=1", "version=2"),
            text.replace("uuid=", "uuid=x"),
            format!("{text}temporary=AAAA\n"),
            format!("{text}shell=yes\n"),
            text.replace("temporary=", "temporary=!"),
        ] {
            assert!(State::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn written_state_is_read_back_and_removed() {
        let dir = std::env::temp_dir().join(format!("kb-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(State::read(&dir).unwrap(), None);
        let state = State {
            stage: Stage::Enrolling,
            uuid: uuid_from(&[7; 16]),
            locked_passphrase: vec![9; 40],
        };
        state.write(&dir).unwrap();
        assert_eq!(State::read(&dir).unwrap(), Some(state));
        remove(&dir).unwrap();
        assert_eq!(State::read(&dir).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
