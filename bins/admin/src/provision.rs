//! `keybound provision`: writes the provisioning plan to the boot partition; keybound-init
//! carries it out on the next boot, before root is mounted (a mounted root cannot be encrypted
//! in place). The plan holds no secret: the vendor's public key, the board profile, the mode.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

/// The plan's file name on the boot partition (keybound-init reads exactly this name).
pub(crate) const PLAN_FILE: &str = "keybound-provision.plan";
/// The root image's file name on the boot partition (a fresh plan names it).
pub(crate) const ROOT_IMAGE_FILE: &str = "keybound-root.img";
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

/// The Zymkey binding the plan demands of the module keybound-init enrols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Binding {
    /// Production mode: the binding tab cut (locked) and bound to this board. A module still in
    /// developer mode follows any host it is moved to, so keybound-init refuses to seal to it.
    Production,
    /// Any module (a lab or development board, binding tab intact).
    Any,
}

/// A perimeter channel and what a breach on it does, as `chN=ACTIONS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PerimeterRule {
    /// Channel 0 or 1.
    pub(crate) channel: u8,
    /// Notify the host.
    pub(crate) notify: bool,
    /// Destroy the module's keys (the sealed root can then never be unlocked on this module).
    pub(crate) self_destruct: bool,
}

impl std::str::FromStr for PerimeterRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (channel, actions) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected chN=ACTIONS, e.g. ch0=self-destruct"))?;
        let channel = match channel {
            "ch0" => 0,
            "ch1" => 1,
            other => return Err(format!("`{other}`: the perimeter channels are ch0 and ch1")),
        };
        let mut rule = Self {
            channel,
            notify: false,
            self_destruct: false,
        };
        if actions != "none" {
            for part in actions.split('+') {
                match part {
                    "notify" if !rule.notify => rule.notify = true,
                    "self-destruct" if !rule.self_destruct => rule.self_destruct = true,
                    other => {
                        return Err(format!(
                            "`{other}`: perimeter actions are none, notify, self-destruct or notify+self-destruct"
                        ));
                    }
                }
            }
        }
        Ok(rule)
    }
}

impl PerimeterRule {
    fn actions(self) -> &'static str {
        match (self.notify, self.self_destruct) {
            (false, false) => "none",
            (true, false) => "notify",
            (false, true) => "self-destruct",
            (true, true) => "notify+self-destruct",
        }
    }
}

/// What to provision: the arguments of `keybound provision` (its help is in main.rs).
#[derive(clap::Args, Debug)]
pub(crate) struct Request {
    /// The vendor's age X25519 recipient (`age1...`, from `keybound-vendor keygen`).
    #[arg(long, value_name = "AGE1...")]
    pub(crate) recipient: String,
    /// The board: pi5 (AES-XTS) or pi4/CM4 (Adiantum).
    #[arg(long, value_enum)]
    pub(crate) profile: Profile,
    /// DESTROYS ALL DATA ON ROOT: format root anew as LUKS2 and fill it from --root-image,
    /// instead of encrypting the data in place (no plaintext of the system is ever written to
    /// root). Refused by keybound-init on an already sealed root.
    #[arg(long, conflicts_with = "re_enrol", requires = "root_image")]
    pub(crate) fresh: bool,
    /// With --fresh: the vendor's root filesystem image (ext4, raw). It is copied to the boot
    /// partition as keybound-root.img with its length and SHA-256 in the plan; keybound-init
    /// checks both before it touches root, grows the filesystem to fill the volume, and
    /// removes the image once root is written.
    #[arg(long, value_name = "FILE", requires = "fresh")]
    pub(crate) root_image: Option<PathBuf>,
    /// Re-enrol an already sealed root: a new sealed secret bound to the Zymkey present and a
    /// new recovery secret for RECIPIENT; the volume key and the data stay.
    #[arg(long = "re-enrol")]
    pub(crate) re_enrol: bool,
    /// The Zymkey perimeter (tamper) policy to arm after enrolment, per channel:
    /// `ch0=self-destruct,ch1=notify` (actions: none, notify, self-destruct,
    /// notify+self-destruct). Self-destruct makes the sealed root unopenable on this module
    /// after a breach: only the vendor's recovery secret opens it then.
    #[arg(long, value_name = "chN=ACTIONS", value_delimiter = ',')]
    pub(crate) perimeter: Vec<PerimeterRule>,
    /// The Zymkey binding keybound-init must find before it seals anything: `production`
    /// (binding tab cut, bound to this board: what production lines pass) or `any`.
    #[arg(long, value_enum, default_value = "any")]
    pub(crate) binding: Binding,
    /// Print the plan instead of writing it.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Write the plan into this directory (a mounted boot partition, e.g. on a host with the
    /// card attached) instead of mounting the board's boot partition.
    #[arg(long, value_name = "DIR")]
    pub(crate) boot_dir: Option<PathBuf>,
}

/// The root image a fresh plan names: its length and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootImageInfo {
    /// Length in bytes.
    pub(crate) bytes: u64,
    /// SHA-256, lower-case hex.
    pub(crate) sha256: String,
}

impl RootImageInfo {
    /// Reads `path` through: its length and digest.
    fn of(path: &Path) -> Result<Self, String> {
        use sha2::Digest;
        use std::io::Read;
        let fail = |e: std::io::Error| format!("--root-image {}: {e}", path.display());
        let mut file = std::fs::File::open(path).map_err(fail)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        if bytes == 0 {
            return Err(format!("--root-image {} is empty", path.display()));
        }
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self { bytes, sha256 })
    }
}

/// The plan text keybound-init parses (version 1, `key=value`); `image` is the root image of a
/// fresh plan.
pub(crate) fn plan_text(req: &Request, image: Option<&RootImageInfo>) -> String {
    let mut text = format!(
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
    );
    text.push_str(match req.binding {
        Binding::Production => "binding=production\n",
        Binding::Any => "binding=any\n",
    });
    for rule in &req.perimeter {
        text.push_str(&format!(
            "perimeter-ch{}={}\n",
            rule.channel,
            rule.actions()
        ));
    }
    if let Some(image) = image {
        text.push_str(&format!(
            "root-image={ROOT_IMAGE_FILE}\nroot-image-bytes={}\nroot-image-sha256={}\n",
            image.bytes, image.sha256
        ));
    }
    text
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
    let mut channels: Vec<u8> = req.perimeter.iter().map(|r| r.channel).collect();
    channels.sort_unstable();
    if channels.windows(2).any(|w| w[0] == w[1]) {
        return Err("--perimeter names a channel twice".into());
    }
    let image = match (&req.root_image, req.fresh) {
        (Some(path), true) => Some((path, RootImageInfo::of(path)?)),
        (None, false) => None,
        _ => return Err("--fresh and --root-image go together".into()),
    };
    let text = plan_text(req, image.as_ref().map(|(_, info)| info));
    if req.dry_run {
        print!("{text}");
        return Ok(());
    }
    // On the board itself (no --boot-dir) the running root tells whether it is sealed; with
    // --boot-dir keybound-init checks the card on its next boot.
    if req.boot_dir.is_none() {
        match (root_is_sealed(), req.re_enrol) {
            (true, false) => {
                return Err(
                    "root is already sealed; use --re-enrol to replace the enrolment".into(),
                );
            }
            (false, true) => return Err("root is not sealed: there is nothing to re-enrol".into()),
            _ => {}
        }
    }
    // The image first, the plan last: a plan never names a half-copied image.
    let write = |dir: &Path| -> Result<(), String> {
        if let Some((path, info)) = &image {
            copy_image(path, info, dir)?;
        }
        write_plan(dir, &text)
    };
    match &req.boot_dir {
        Some(dir) => write(dir),
        None => {
            let boot = boot_partition()?;
            std::fs::create_dir_all(MOUNT_POINT).map_err(|e| format!("{MOUNT_POINT}: {e}"))?;
            mount_vfat(&boot, Path::new(MOUNT_POINT))?;
            let result = write(Path::new(MOUNT_POINT));
            let target = std::ffi::CString::new(MOUNT_POINT).expect("no NUL");
            // SAFETY: umount2 with a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), 0) };
            result
        }
    }?;
    println!("provisioning plan written; it runs on the next boot (reboot now)");
    Ok(())
}

/// Copies the root image to the boot partition as [`ROOT_IMAGE_FILE`] (temporary file, fsync,
/// rename) and checks the copy against `info` (the source could change under us).
fn copy_image(path: &Path, info: &RootImageInfo, dir: &Path) -> Result<(), String> {
    let tmp = dir.join(format!("{ROOT_IMAGE_FILE}.new"));
    let fail = |e: std::io::Error| format!("copying {} to {}: {e}", path.display(), dir.display());
    std::fs::copy(path, &tmp).map_err(fail)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(fail)?;
    let copied = RootImageInfo::of(&tmp)?;
    if &copied != info {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "the copy of {} on the boot partition differs from it (did it change?)",
            path.display()
        ));
    }
    std::fs::rename(&tmp, dir.join(ROOT_IMAGE_FILE)).map_err(fail)
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
    let partition = underlying_partition(&root)?;
    let disk = partition.trim_end_matches(|c: char| c.is_ascii_digit());
    Ok(PathBuf::from(format!("{disk}1")))
}

/// The partition under `dev`: itself, or for a device-mapper root (a sealed root,
/// `/dev/dm-N` or `/dev/mapper/NAME`) the one partition it maps (`/sys/block/dm-N/slaves`).
fn underlying_partition(dev: &str) -> Result<String, String> {
    let name = std::fs::canonicalize(dev)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let dm = if name.starts_with("dm-") {
        Some(name)
    } else if let Some(mapped) = dev.strip_prefix("/dev/mapper/") {
        std::fs::read_dir("/sys/block")
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|b| {
                std::fs::read_to_string(format!("/sys/block/{b}/dm/name"))
                    .is_ok_and(|n| n.trim() == mapped)
            })
    } else {
        None
    };
    let Some(dm) = dm else {
        return Ok(dev.to_string());
    };
    let slaves: Vec<String> = std::fs::read_dir(format!("/sys/block/{dm}/slaves"))
        .map_err(|e| format!("finding the partition under {dev}: {e}"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match slaves.as_slice() {
        [one] => Ok(format!("/dev/{one}")),
        _ => Err(format!(
            "{dev} does not map exactly one partition; use --boot-dir"
        )),
    }
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
            root_image: None,
            re_enrol: false,
            perimeter: vec![],
            binding: Binding::Any,
            dry_run: false,
            boot_dir: dir,
        }
    }

    #[test]
    fn plan_names_recipient_profile_and_mode() {
        let text = plan_text(&req(None), None);
        for line in [
            "version=1",
            &format!("recipient={RECIPIENT}"),
            "profile=pi5",
            "mode=in-place",
            "re-enrol=no",
            "binding=any",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        let mut production = req(None);
        production.binding = Binding::Production;
        assert!(
            plan_text(&production, None)
                .lines()
                .any(|l| l == "binding=production")
        );
    }

    #[test]
    fn plan_is_written_to_the_boot_dir_and_bad_recipients_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        provision(&req(Some(dir.path().into()))).unwrap();
        let text = std::fs::read_to_string(dir.path().join(PLAN_FILE)).unwrap();
        assert_eq!(text, plan_text(&req(None), None));
        let mut bad = req(Some(dir.path().into()));
        bad.recipient = "age1notakey".into();
        assert!(provision(&bad).is_err());
    }

    #[test]
    fn perimeter_rules_parse_and_reach_the_plan() {
        let mut r = req(None);
        r.perimeter = ["ch0=self-destruct", "ch1=notify+self-destruct"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let text = plan_text(&r, None);
        assert!(
            text.lines().any(|l| l == "perimeter-ch0=self-destruct"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "perimeter-ch1=notify+self-destruct"),
            "{text}"
        );
        for bad in [
            "ch2=notify",
            "ch0",
            "ch0=explode",
            "ch1=notify+notify",
            "ch0=",
        ] {
            assert!(bad.parse::<PerimeterRule>().is_err(), "{bad}");
        }
        r.perimeter.push("ch0=none".parse().unwrap());
        r.dry_run = true;
        assert!(provision(&r).unwrap_err().contains("twice"));
    }

    #[test]
    fn fresh_copies_the_image_and_names_its_digest_in_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::create_dir(&boot).unwrap();
        let image = dir.path().join("rootfs.ext4");
        std::fs::write(&image, b"abc").unwrap();
        let mut r = req(Some(boot.clone()));
        r.fresh = true;
        r.root_image = Some(image);
        provision(&r).unwrap();
        assert_eq!(std::fs::read(boot.join(ROOT_IMAGE_FILE)).unwrap(), b"abc");
        let text = std::fs::read_to_string(boot.join(PLAN_FILE)).unwrap();
        for line in [
            "mode=fresh",
            "root-image=keybound-root.img",
            "root-image-bytes=3",
            // SHA-256("abc")
            "root-image-sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(!boot.join(format!("{ROOT_IMAGE_FILE}.new")).exists());
    }

    #[test]
    fn fresh_without_an_image_or_with_a_missing_one_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = req(Some(dir.path().into()));
        r.fresh = true;
        assert!(provision(&r).unwrap_err().contains("--root-image"));
        r.root_image = Some(dir.path().join("no-such.ext4"));
        assert!(provision(&r).unwrap_err().contains("no-such.ext4"));
        let mut only_image = req(Some(dir.path().into()));
        only_image.root_image = Some(dir.path().join("x"));
        assert!(provision(&only_image).is_err());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
