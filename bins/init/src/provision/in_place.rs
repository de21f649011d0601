//! In-place encryption of root that survives a power cut at any point.
//!
//! 1. `e2fsck`, a room check (no room: the plan is refused before anything is written), `resize2fs`
//!    shrink by the header room — all idempotent, so a cut here simply starts over.
//! 2. A temporary passphrase (random, RAM only) is locked by the Zymkey and recorded with the
//!    stage and the new header's UUID on the boot partition ([`State`]) before the first write
//!    to root.
//! 3. `cryptsetup reencrypt --encrypt --reduce-device-size --resilience checksum` under a fresh
//!    volume key, temporary keyslot 0. A cut leaves the LUKS2 online-reencrypt requirement in
//!    the header: the next boot unlocks the temporary passphrase with the Zymkey and runs
//!    `cryptsetup reencrypt --resume-only`. (A cut before the header reached the card leaves
//!    plain ext4: the encryption starts over with the same passphrase and UUID.)
//! 4. Enrolment (a half-written one from a cut is discarded first), the temporary keyslot
//!    destroyed, the state overwritten and removed.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;

use sealed_root::{RecoveryKdf, SecureElement, VolumeKey};
use zeroize::Zeroizing;

use super::plan::Plan;
use super::state::{self, Stage, State};
use super::tool;
use crate::{console, unlock};

/// Room taken from the end of the filesystem for the LUKS2 header (twice the 16 MiB header,
/// as cryptsetup recommends for `--reduce-device-size`).
const HEADER_ROOM: u64 = 32 << 20;
/// Scratch for the volume key and temporary passphrase files (the initramfs is RAM).
const SCRATCH: &str = "/run/keybound-provision";
/// The temporary keyslot the encryption creates.
pub(super) const TEMP_KEYSLOT: u32 = 0;

/// Proof that root's filesystem is clean and has room for the LUKS2 header: only
/// [`check_room`] makes one, and [`start`] needs one.
pub(super) struct RoomChecked(());

/// Checked before anything is written: `e2fsck` (which may repair), then whether the filesystem
/// fits in the partition less the header room. An error here means root is untouched: the
/// caller refuses the plan rather than failing the boot.
pub(super) fn check_room(root: &Path) -> Result<RoomChecked, String> {
    let dev = root.to_string_lossy().into_owned();
    tool("/sbin/e2fsck", &["-f", "-y", &dev], &[0, 1])?;
    let size = partition_bytes(root)?;
    let minimum = minimum_fs_bytes(root)?;
    let target = size.saturating_sub(HEADER_ROOM);
    if minimum > target {
        return Err(format!(
            "no room for the LUKS2 header on root (its filesystem needs {} MiB, {} MiB are left \
             after the header's {} MiB); free space and plan again, data untouched",
            minimum >> 20,
            target >> 20,
            HEADER_ROOM >> 20
        ));
    }
    Ok(RoomChecked(()))
}

/// Starts provisioning an unencrypted root whose room was checked: shrinks, records the state,
/// encrypts, enrols.
pub(super) fn start(
    root: &Path,
    plan: &Plan,
    boot: &Path,
    checked: RoomChecked,
) -> Result<(), String> {
    console::say("keybound-init: provisioning: encrypting root in place");
    shrink(root, checked)?;
    let pass = temporary_passphrase()?;
    let state = new_state(Stage::Encrypting, &pass)?;
    state.write(boot)?;
    encrypt(root, plan, &state, &pass)?;
    finish(root, plan, state, &pass, boot)
}

/// Resumes provisioning after a power cut (or any interruption) from the recorded state.
pub(super) fn resume(root: &Path, plan: &Plan, state: State, boot: &Path) -> Result<(), String> {
    console::say("keybound-init: provisioning: resuming after an interruption");
    let pass = unlock_passphrase(&state)?;
    if !unlock::is_luks(root)? {
        // The header never reached the card: root is still the shrunk plain filesystem.
        console::say("keybound-init: provisioning: encrypting root in place");
        let checked = check_room(root).map_err(|e| format!("provisioning: {e}"))?;
        shrink(root, checked)?;
        encrypt(root, plan, &state, &pass)?;
    } else {
        let header_uuid = header_uuid(root)?;
        if header_uuid != state.uuid {
            return Err(format!(
                "provisioning: root's LUKS2 UUID {header_uuid} is not the one being provisioned"
            ));
        }
        if sealed_root::reencrypt_pending(root).map_err(|e| format!("provisioning: {e}"))? {
            console::say("keybound-init: provisioning: resuming the interrupted encryption");
            let pass_file = scratch_file("pass", pass.as_bytes())?;
            let dev = root.to_string_lossy().into_owned();
            let result = reencrypt(&[
                "reencrypt",
                "--resume-only",
                "--key-file",
                &pass_file.to_string_lossy(),
                &dev,
            ]);
            wipe(&pass_file);
            result?;
        }
    }
    finish(root, plan, state, &pass, boot)
}

/// A new state at `stage`: a fresh UUID for the new header and `pass` locked by the Zymkey.
pub(super) fn new_state(stage: Stage, pass: &str) -> Result<State, String> {
    let locked =
        unlock::with_zymkey(|zk| Ok(SecureElement::lock(zk, pass.as_bytes())?)).map_err(|e| {
            format!(
                "provisioning: locking the temporary passphrase: {}",
                unlock::reason(&e)
            )
        })?;
    let uuid_bytes = VolumeKey::generate(16).map_err(|e| format!("provisioning: {e}"))?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(uuid_bytes.expose_secret());
    Ok(State {
        stage,
        uuid: state::uuid_from(&uuid),
        locked_passphrase: locked,
    })
}

/// The state's temporary passphrase, unlocked by the Zymkey.
pub(super) fn unlock_passphrase(state: &State) -> Result<Zeroizing<String>, String> {
    unlock::with_zymkey(|zk| Ok(SecureElement::unlock(zk, &state.locked_passphrase)?))
        .map_err(|e| {
            format!(
                "provisioning: unlocking the temporary passphrase: {}",
                unlock::reason(&e)
            )
        })
        .and_then(|bytes| {
            String::from_utf8(bytes.to_vec())
                .map(Zeroizing::new)
                .map_err(|_| "provisioning: the temporary passphrase is malformed".to_string())
        })
}

/// Enrols, destroys the temporary keyslot, arms the perimeter, removes the state.
pub(super) fn finish(
    root: &Path,
    plan: &Plan,
    mut state: State,
    pass: &str,
    boot: &Path,
) -> Result<(), String> {
    if state.stage != Stage::Enrolling {
        state.stage = Stage::Enrolling;
        state.write(boot)?;
    }
    let fail = |e: sealed_root::Error| format!("provisioning: {e}");
    match sealed_root::volume_key_from_keyslot(root, TEMP_KEYSLOT, pass.as_bytes()).map_err(fail)? {
        Some(volume_key) => {
            let recipient = age::x25519::Recipient::from_str(&plan.recipient)
                .map_err(|_| "provisioning: bad recipient".to_string())?;
            // A cut during an earlier enrolment may have left tokens or keyslots: only this
            // provisioning made them (the state says so), so they go.
            sealed_root::discard_partial_enrolment(root, TEMP_KEYSLOT).map_err(fail)?;
            unlock::with_zymkey(|zk| {
                sealed_root::enroll(root, &volume_key, zk, &recipient, RecoveryKdf::Production)
            })
            .map_err(|e| format!("provisioning: enrolment: {}", unlock::reason(&e)))?;
            destroy_keyslot(root, TEMP_KEYSLOT)?;
        }
        None => {
            // The temporary keyslot is gone: the enrolment finished before the interruption.
            // It must be complete and this module's.
            let tokens = sealed_root::read_tokens(root).map_err(fail)?;
            if tokens.zymkey.is_none() || tokens.recovery.is_none() {
                return Err(
                    "provisioning: the temporary keyslot is gone but root is not enrolled".into(),
                );
            }
            unlock::with_zymkey(|zk| sealed_root::unseal(root, zk).map(|_| ()))
                .map_err(|e| format!("provisioning: enrolment check: {}", unlock::reason(&e)))?;
        }
    }
    super::perimeter::arm(&plan.perimeter)?;
    state::remove(boot)
}

/// Shrinks the filesystem by the header room (a no-op when it is already that small).
fn shrink(root: &Path, _checked: RoomChecked) -> Result<(), String> {
    let dev = root.to_string_lossy().into_owned();
    let target = partition_bytes(root)?.saturating_sub(HEADER_ROOM);
    tool(
        "/sbin/resize2fs",
        &[&dev, &format!("{}K", target / 1024)],
        &[0],
    )?;
    Ok(())
}

/// A random 32-byte passphrase in hex (RAM only; on the card only locked by the Zymkey).
pub(super) fn temporary_passphrase() -> Result<Zeroizing<String>, String> {
    let temp = VolumeKey::generate(32).map_err(|e| format!("provisioning: {e}"))?;
    Ok(Zeroizing::new(
        temp.expose_secret()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    ))
}

/// A new header's key material in RAM scratch files for one `cryptsetup` run: a fresh volume
/// key for the plan's profile and the temporary passphrase. Both files are overwritten and
/// removed when this is dropped.
pub(super) struct NewHeaderKeys {
    volume_key: std::path::PathBuf,
    passphrase: std::path::PathBuf,
}

impl NewHeaderKeys {
    /// Generates the volume key and writes both files.
    pub(super) fn new(plan: &Plan, pass: &str) -> Result<Self, String> {
        let volume_key = VolumeKey::generate(plan.profile.key_bytes())
            .map_err(|e| format!("provisioning: {e}"))?;
        let volume_key = scratch_file("vk", volume_key.expose_secret())?;
        match scratch_file("pass", pass.as_bytes()) {
            Ok(passphrase) => Ok(Self {
                volume_key,
                passphrase,
            }),
            Err(e) => {
                wipe(&volume_key);
                Err(e)
            }
        }
    }

    /// The options every new keybound header gets: LUKS2, the profile's cipher and key size,
    /// the state's UUID and label, and the temporary keyslot 0 with a minimal PBKDF (it is
    /// destroyed after enrolment).
    pub(super) fn header_options(&self, plan: &Plan, state: &State) -> Vec<String> {
        let mut options: Vec<String> = [
            "--type",
            "luks2",
            "--cipher",
            &plan.profile.cipher_spec(),
            "--key-size",
            &(plan.profile.key_bytes() * 8).to_string(),
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--label",
            "keybound-root",
            "--uuid",
            &state.uuid,
            "--key-slot",
            &TEMP_KEYSLOT.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (flag, file) in [
            ("--volume-key-file", &self.volume_key),
            ("--key-file", &self.passphrase),
        ] {
            options.push(flag.into());
            options.push(file.to_string_lossy().into_owned());
        }
        options
    }
}

impl Drop for NewHeaderKeys {
    fn drop(&mut self) {
        wipe(&self.volume_key);
        wipe(&self.passphrase);
    }
}

/// `cryptsetup reencrypt --encrypt` under a fresh volume key, keyslot 0 for `pass`.
fn encrypt(root: &Path, plan: &Plan, state: &State, pass: &str) -> Result<(), String> {
    let keys = NewHeaderKeys::new(plan, pass)?;
    let mut args: Vec<String> = vec!["reencrypt".into(), "--encrypt".into()];
    args.extend(keys.header_options(plan, state));
    for option in ["--reduce-device-size", "32M", "--resilience", "checksum"] {
        args.push(option.into());
    }
    args.push(root.to_string_lossy().into_owned());
    console::say("keybound-init: provisioning: reencrypt started");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    reencrypt(&args)
}

/// Runs `cryptsetup` with progress lines every 2 s (not `--batch-mode`, which silences them;
/// stdin is closed, so no question can be answered) relayed to the console as
/// `keybound-init: provisioning: encrypted N%`.
fn reencrypt(args: &[&str]) -> Result<(), String> {
    let mut child = Command::new("/sbin/cryptsetup")
        .args(args)
        .args(["--progress-frequency", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("provisioning: running cryptsetup: {e}"))?;
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
        }
        text
    });
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(percent) = progress_percent(&line) {
                console::say(&format!("keybound-init: provisioning: encrypted {percent}"));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("provisioning: waiting for cryptsetup: {e}"))?;
    let err = errors.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let last = err.lines().last().unwrap_or("").trim();
    Err(format!(
        "provisioning: cryptsetup {} failed ({:?}): {last}",
        args[1],
        status.code()
    ))
}

/// `Progress:  42.8%, ETA …` → `42.8%`.
fn progress_percent(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("Progress:")?.trim_start();
    let end = rest.find('%')?;
    let number = &rest[..end];
    number
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then(|| &rest[..=end])
}

fn header_uuid(root: &Path) -> Result<String, String> {
    let mut luks = sealed_root::Luks2::open(root).map_err(|e| format!("provisioning: {e}"))?;
    let uuid = luks.uuid().map_err(|e| format!("provisioning: {e}"))?;
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// The partition's size in bytes (sysfs counts 512-byte sectors).
pub(super) fn partition_bytes(root: &Path) -> Result<u64, String> {
    let name = root.file_name().unwrap_or_default().to_string_lossy();
    let sectors = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
        .map_err(|e| format!("provisioning: size of {name}: {e}"))?;
    sectors
        .trim()
        .parse::<u64>()
        .map(|s| s * 512)
        .map_err(|_| format!("provisioning: size of {name} unreadable"))
}

/// `resize2fs -P`: the filesystem's minimum size in bytes (it prints blocks; the block size
/// comes from the superblock).
fn minimum_fs_bytes(root: &Path) -> Result<u64, String> {
    let dev = root.to_string_lossy();
    let out = tool("/sbin/resize2fs", &["-P", &dev], &[0])?;
    let blocks = out
        .lines()
        .find_map(|l| l.split_once("minimum size of the filesystem:"))
        .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        .ok_or("provisioning: resize2fs -P gave no minimum size")?;
    let mut sb = [0u8; 1024];
    let mut f = std::fs::File::open(root).map_err(|e| format!("provisioning: {e}"))?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1024))
        .and_then(|_| std::io::Read::read_exact(&mut f, &mut sb))
        .map_err(|e| format!("provisioning: reading the superblock: {e}"))?;
    let log = u32::from_le_bytes([sb[0x18], sb[0x19], sb[0x1a], sb[0x1b]]);
    if log > 6 {
        return Err("provisioning: root is not an ext filesystem".into());
    }
    Ok(blocks * (1024u64 << log))
}

/// Writes a secret to a fresh 0600 file in the RAM scratch directory.
pub(super) fn scratch_file(name: &str, bytes: &[u8]) -> Result<std::path::PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = Path::new(SCRATCH);
    std::fs::create_dir_all(dir).map_err(|e| format!("provisioning: {e}"))?;
    let path = dir.join(name);
    wipe(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("provisioning: scratch file: {e}"))?;
    f.write_all(bytes)
        .map_err(|e| format!("provisioning: scratch file: {e}"))?;
    Ok(path)
}

/// Overwrites and removes a scratch secret file.
pub(super) fn wipe(path: &Path) {
    if let Ok(len) = std::fs::metadata(path).map(|m| m.len()) {
        let _ = std::fs::write(path, vec![0u8; len as usize]);
    }
    let _ = std::fs::remove_file(path);
}

fn destroy_keyslot(root: &Path, keyslot: u32) -> Result<(), String> {
    use libcryptsetup_rs::consts::vals::EncryptionFormat;
    let fail = |e: libcryptsetup_rs::LibcryptErr| format!("provisioning: temporary keyslot: {e}");
    let mut dev = libcryptsetup_rs::CryptInit::init(root).map_err(fail)?;
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(fail)?;
    dev.keyslot_handle().destroy(keyslot).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_give_the_percentage() {
        assert_eq!(
            progress_percent("Progress:  42.8%, ETA 00m01s,  464 MiB written, speed 443.5 MiB/s"),
            Some("42.8%")
        );
        assert_eq!(
            progress_percent("Finished, time 00m02s, 1084 MiB written"),
            None
        );
        assert_eq!(progress_percent("Progress: x%"), None);
    }
}
