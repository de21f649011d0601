//! `keybound provision`: writes the provisioning plan to the boot partition; keybound-init
//! carries it out on the next boot, before root is mounted (a mounted root cannot be encrypted
//! in place). The plan holds no secret: the vendor's public key, the board profile, the mode.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

/// The plan's file name on the boot partition (keybound-init reads exactly this name).
pub(crate) const PLAN_FILE: &str = "keybound-provision.plan";
/// Where this command mounts the boot partition when it is not mounted.
const MOUNT_POINT: &str = "/run/keybound-boot";

/// The board profile: it decides the data cipher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Profile {
    /// Raspberry Pi 4 / CM4 (no AES instructions): Adiantum.
    Pi4,
    /// Raspberry Pi 5 (AES instructions): AES-XTS.
    Pi5,
}

/// What to provision.
pub(crate) struct Request {
    pub(crate) recipient: String,
    pub(crate) profile: Profile,
    pub(crate) fresh: bool,
    pub(crate) re_enrol: bool,
    pub(crate) dry_run: bool,
    pub(crate) boot_dir: Option<PathBuf>,
}

/// The plan text keybound-init parses (version 1, `key=value`).
pub(crate) fn plan_text(req: &Request) -> String {
    format!(
        "# keybound provisioning plan: keybound-init carries it out on the next boot.\n\
         # mode=fresh formats root anew and DESTROYS its data; in-place keeps it.\n\
         version=1\nrecipient={}\nprofile={}\nmode={}\nre-enrol={}\n",
        req.recipient,
        match req.profile {
            Profile::Pi4 => "pi4",
            Profile::Pi5 => "pi5",
        },
        if req.fresh { "fresh" } else { "in-place" },
        if req.re_enrol { "yes" } else { "no" },
    )
}

/// Runs the command.
pub(crate) fn run(req: &Request) -> ExitCode {
    match provision(req) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keybound provision: {e}");
            ExitCode::FAILURE
        }
    }
}

fn provision(req: &Request) -> Result<(), String> {
    age::x25519::Recipient::from_str(&req.recipient)
        .map_err(|_| "--recipient is not an age X25519 recipient (age1...)".to_string())?;
    let text = plan_text(req);
    if req.dry_run {
        print!("{text}");
        return Ok(());
    }
    if root_is_sealed() && !req.re_enrol {
        return Err("root is already sealed; use --re-enrol to replace the enrolment".into());
    }
    match &req.boot_dir {
        Some(dir) => write_plan(dir, &text),
        None => {
            let boot = boot_partition()?;
            std::fs::create_dir_all(MOUNT_POINT).map_err(|e| format!("{MOUNT_POINT}: {e}"))?;
            mount_vfat(&boot, Path::new(MOUNT_POINT))?;
            let result = write_plan(Path::new(MOUNT_POINT), &text);
            let target = std::ffi::CString::new(MOUNT_POINT).expect("no NUL");
            // SAFETY: umount2 with a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), 0) };
            result
        }
    }?;
    println!("provisioning plan written; it runs on the next boot (reboot now)");
    Ok(())
}

/// Writes the plan atomically (temporary file, fsync, rename).
fn write_plan(dir: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let tmp = dir.join(format!("{PLAN_FILE}.new"));
    let fail = |e: std::io::Error| format!("writing the plan in {}: {e}", dir.display());
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, dir.join(PLAN_FILE)).map_err(fail)
}

/// Whether `/` sits on a dm-crypt mapping.
fn root_is_sealed() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (Some(dev), Some("/")) = (f.next(), f.next()) else {
            return false;
        };
        let name = std::fs::canonicalize(dev)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        std::fs::read_to_string(format!("/sys/block/{name}/dm/uuid"))
            .is_ok_and(|u| u.starts_with("CRYPT-"))
    })
}

/// Partition 1 of the disk holding root (`/dev/vda2` → `/dev/vda1`).
fn boot_partition() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
    let root = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?))
        })
        .filter(|(dev, dir)| *dir == "/" && dev.starts_with("/dev/"))
        .map(|(dev, _)| dev.to_string())
        .next_back()
        .ok_or("cannot find the device mounted at /; use --boot-dir")?;
    let disk = root.trim_end_matches(|c: char| c.is_ascii_digit());
    Ok(PathBuf::from(format!("{disk}1")))
}

fn mount_vfat(dev: &Path, target: &Path) -> Result<(), String> {
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL");
    let (src, dst) = (c(dev), c(target));
    let fstype = std::ffi::CString::new("vfat").expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!(
            "mounting the boot partition {}: {}",
            dev.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn req(dir: Option<PathBuf>) -> Request {
        Request {
            recipient: RECIPIENT.into(),
            profile: Profile::Pi5,
            fresh: false,
            re_enrol: false,
            dry_run: false,
            boot_dir: dir,
        }
    }

    #[test]
    fn plan_names_recipient_profile_and_mode() {
        let text = plan_text(&req(None));
        for line in [
            "version=1",
            &format!("recipient={RECIPIENT}"),
            "profile=pi5",
            "mode=in-place",
            "re-enrol=no",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn plan_is_written_to_the_boot_dir_and_bad_recipients_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(provision(&req(Some(dir.path().into()))).is_ok() || root_is_sealed());
        if !root_is_sealed() {
            let text = std::fs::read_to_string(dir.path().join(PLAN_FILE)).unwrap();
            assert_eq!(text, plan_text(&req(None)));
        }
        let mut bad = req(Some(dir.path().into()));
        bad.recipient = "age1notakey".into();
        assert!(provision(&bad).is_err());
    }
}
