//! Fresh provisioning: root is formatted anew as LUKS2 and filled from the vendor's root image
//! on the boot partition, so no plaintext byte of the system is ever written to root (in-place
//! encryption rewrites plaintext that the card's flash may keep in remapped blocks).
//!
//! 1. The image is checked before root is touched: its length, that it fits the partition
//!    less the LUKS2 header, and its SHA-256 against the plan ([`check_image`]); any mismatch
//!    refuses the plan.
//! 2. The state (stage `formatting`, the new header's UUID, a temporary passphrase locked by
//!    the Zymkey) is recorded on the boot partition before the first write to root.
//! 3. `cryptsetup luksFormat` under a fresh volume key (temporary keyslot 0), the image copied
//!    into the opened volume, `e2fsck` and `resize2fs` to fill it.
//! 4. The state moves to `enrolling`, the image is overwritten and removed from the boot
//!    partition, and the enrolment runs as after an in-place encryption (Zymkey slot, recovery
//!    slot, temporary keyslot destroyed, perimeter armed).
//!
//! A cut during 2–3 starts the formatting over on the next boot (root holds nothing to keep
//! yet); a cut during 4 finishes the wipe and resumes the enrolment.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::in_place;
use super::plan::{Plan, RootImage};
use super::state::{Stage, State};
use crate::{console, unlock};

/// The mapping the new volume is opened as while the image is written into it.
const MAPPING: &str = "keybound-fresh";
/// Copy buffer.
const CHUNK: usize = 4 << 20;
/// Where `cryptsetup luksFormat` starts the data by default (LUKS2 metadata and keyslots).
const LUKS2_HEADER: u64 = 16 << 20;

/// Proof that the root image on the boot partition is the one the plan names and fits root:
/// only [`check_image`] makes one, and [`start`] needs one.
pub(super) struct ImageChecked(PathBuf);

/// Checks the image before anything is written: present, the plan's length, room for it and
/// the LUKS2 header on root, the plan's SHA-256. An error here means root is untouched: the
/// caller refuses the plan.
pub(super) fn check_image(
    root: &Path,
    image: &RootImage,
    boot: &Path,
) -> Result<ImageChecked, String> {
    let path = boot.join(&image.name);
    let mut file = std::fs::File::open(&path)
        .map_err(|e| format!("root image {} on the boot partition: {e}", image.name))?;
    let len = file
        .metadata()
        .map_err(|e| format!("root image {}: {e}", image.name))?
        .len();
    if len != image.bytes {
        return Err(format!(
            "root image {} is {len} bytes, the plan says {}",
            image.name, image.bytes
        ));
    }
    let room = in_place::partition_bytes(root)?.saturating_sub(LUKS2_HEADER);
    if len > room {
        return Err(format!(
            "no room for root image {} ({} MiB) on root ({} MiB after the LUKS2 header)",
            image.name,
            len >> 20,
            room >> 20
        ));
    }
    console::say(&format!(
        "keybound-init: provisioning: checking root image {}",
        image.name
    ));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("reading root image {}: {e}", image.name))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if digest != image.sha256 {
        return Err(format!(
            "root image {} does not match the plan's SHA-256 (damaged or replaced)",
            image.name
        ));
    }
    Ok(ImageChecked(path))
}

/// Formats root anew from the checked image, then enrols.
pub(super) fn start(
    root: &Path,
    plan: &Plan,
    boot: &Path,
    image: ImageChecked,
) -> Result<(), String> {
    console::say("keybound-init: provisioning: formatting root fresh (its old data is destroyed)");
    let pass = in_place::temporary_passphrase()?;
    let state = in_place::new_state(Stage::Formatting, &pass)?;
    state.write(boot)?;
    format_and_fill(root, plan, &state, &pass, &image.0)?;
    finish(root, plan, state, &pass, boot, &image.0)
}

/// Resumes after an interruption in the `formatting` stage: the image is checked again and
/// the formatting starts over under the recorded UUID and temporary passphrase.
pub(super) fn resume(
    root: &Path,
    plan: &Plan,
    image: &RootImage,
    state: State,
    boot: &Path,
) -> Result<(), String> {
    console::say("keybound-init: provisioning: formatting again after an interruption");
    let checked = check_image(root, image, boot).map_err(|e| format!("provisioning: {e}"))?;
    let pass = in_place::unlock_passphrase(&state)?;
    format_and_fill(root, plan, &state, &pass, &checked.0)?;
    finish(root, plan, state, &pass, boot, &checked.0)
}

/// Resumes after an interruption in the `enrolling` stage of a fresh provisioning: finishes
/// wiping the image if it is still there, then the enrolment.
pub(super) fn resume_enrolment(
    root: &Path,
    plan: &Plan,
    image: &RootImage,
    state: State,
    boot: &Path,
) -> Result<(), String> {
    let path = boot.join(&image.name);
    if path.exists() {
        wipe_image(&path)?;
    }
    in_place::resume(root, plan, state, boot)
}

/// Records that root is written (a cut from here on resumes the enrolment, which needs no
/// image), removes the image from the boot partition, and enrols as after an in-place
/// encryption.
fn finish(
    root: &Path,
    plan: &Plan,
    mut state: State,
    pass: &str,
    boot: &Path,
    image: &Path,
) -> Result<(), String> {
    state.stage = Stage::Enrolling;
    state.write(boot)?;
    wipe_image(image)?;
    in_place::finish(root, plan, state, pass, boot)
}

/// Overwrites the image with zeros before removing it: a deleted file's clusters keep its
/// bytes, and the vendor's system must not stay readable in the boot partition's free space.
/// (Flash wear levelling may still hold old copies below what software can reach.)
fn wipe_image(image: &Path) -> Result<(), String> {
    console::say("keybound-init: provisioning: wiping the root image from the boot partition");
    let fail = |e: std::io::Error| format!("provisioning: wiping the root image: {e}");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(fail)?;
    let mut left = file.metadata().map_err(fail)?.len();
    let zeros = vec![0u8; CHUNK];
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&zeros[..n]).map_err(fail)?;
        left -= n as u64;
    }
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::remove_file(image).map_err(fail)?;
    nix::unistd::sync();
    Ok(())
}

/// `luksFormat` (fresh volume key, temporary keyslot 0 for `pass`, the state's UUID), then the
/// image written into the opened volume and grown to fill it.
fn format_and_fill(
    root: &Path,
    plan: &Plan,
    state: &State,
    pass: &str,
    image: &Path,
) -> Result<(), String> {
    let keys = in_place::NewHeaderKeys::new(plan, pass)?;
    let mut args: Vec<String> = vec!["luksFormat".into(), "--batch-mode".into()];
    args.extend(keys.header_options(plan, state));
    args.push(root.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let formatted = super::tool("/sbin/cryptsetup", &args, &[0]);
    drop(keys);
    formatted?;
    console::say("keybound-init: provisioning: formatted; writing the root image");
    open(root, pass)?;
    let written = write_image(image).and_then(|target| {
        let target = target.to_string_lossy().into_owned();
        super::tool("/sbin/e2fsck", &["-f", "-y", &target], &[0, 1])?;
        super::tool("/sbin/resize2fs", &[&target], &[0])
    });
    let closed = close();
    written?;
    closed
}

/// Opens the new volume with the temporary passphrase (its keyslot) as [`MAPPING`].
fn open(root: &Path, pass: &str) -> Result<(), String> {
    use libcryptsetup_rs::consts::flags::CryptActivate;
    use libcryptsetup_rs::consts::vals::EncryptionFormat;
    let fail =
        |e: libcryptsetup_rs::LibcryptErr| format!("provisioning: opening the new volume: {e}");
    let mut dev = libcryptsetup_rs::CryptInit::init(root).map_err(fail)?;
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(fail)?;
    dev.activate_handle()
        .activate_by_passphrase(
            Some(MAPPING),
            Some(in_place::TEMP_KEYSLOT),
            pass.as_bytes(),
            CryptActivate::empty(),
        )
        .map(|_| ())
        .map_err(fail)
}

/// Closes [`MAPPING`].
fn close() -> Result<(), String> {
    use libcryptsetup_rs::consts::flags::CryptDeactivate;
    let fail =
        |e: libcryptsetup_rs::LibcryptErr| format!("provisioning: closing the new volume: {e}");
    let mut dev =
        libcryptsetup_rs::CryptInit::init_by_name_and_header(MAPPING, None).map_err(fail)?;
    dev.activate_handle()
        .deactivate(MAPPING, CryptDeactivate::empty())
        .map_err(fail)
}

/// Copies the image into the opened volume (progress every 10 %); returns the volume's node.
fn write_image(image: &Path) -> Result<PathBuf, String> {
    let target = unlock::dm_node(MAPPING)
        .map(PathBuf::from)
        .ok_or("provisioning: the new volume has no device node")?;
    let fail = |what: &str, e: std::io::Error| format!("provisioning: {what}: {e}");
    let mut from = std::fs::File::open(image).map_err(|e| fail("opening the root image", e))?;
    let total = from
        .metadata()
        .map_err(|e| fail("reading the root image", e))?
        .len()
        .max(1);
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .map_err(|e| fail("opening the new volume", e))?;
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let (mut done, mut shown) = (0u64, 0u64);
    loop {
        let n = from
            .read(&mut buf)
            .map_err(|e| fail("reading the root image", e))?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])
            .map_err(|e| fail("writing the new volume", e))?;
        done += n as u64;
        let percent = done * 100 / total;
        if percent >= shown + 10 {
            shown = percent - percent % 10;
            console::say(&format!("keybound-init: provisioning: written {shown}%"));
        }
    }
    to.sync_all()
        .map_err(|e| fail("flushing the new volume", e))?;
    Ok(target)
}
