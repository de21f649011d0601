//! First-boot provisioning: the plan `keybound provision` left on the boot partition, carried
//! out before root is mounted (a mounted root cannot be encrypted in place).
//!
//! - An unencrypted root is encrypted in place ([`in_place`]), resumably: a power cut at any
//!   point resumes on the next boot from the state recorded next to the plan ([`state`]).
//! - A sealed root is refused unless the plan asks to re-enrol: then a new sealed secret bound
//!   to the module present and a new recovery secret, keeping the volume key.
//! - The perimeter policy the plan carries is armed after enrolment ([`perimeter`]).
//!
//! Neither the plan nor the state holds a secret in clear.

mod fresh;
mod in_place;
mod perimeter;
mod plan;
mod state;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use nix::mount::{MsFlags, mount, umount};
use sealed_root::RecoveryKdf;

use crate::{console, unlock};
use plan::{Mode, PLAN_FILE, Plan};

/// Where the boot partition is mounted while provisioning.
const BOOT_MOUNT: &str = "/boot";

/// The boot partition next to root (partition 1 of the same disk).
fn boot_partition(root: &Path) -> PathBuf {
    let name = root.to_string_lossy();
    let disk = name.trim_end_matches(|c: char| c.is_ascii_digit());
    PathBuf::from(format!("{disk}1"))
}

/// Carries out a plan if the boot partition holds one; returns at once otherwise.
pub(crate) fn run_if_planned(root: &Path) -> Result<(), String> {
    let boot = boot_partition(root);
    let _ = std::fs::create_dir_all(BOOT_MOUNT);
    // libcryptsetup's lock directory (the initramfs is a writable rootfs).
    let _ = std::fs::create_dir_all("/run/cryptsetup");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    if mount(Some(&boot), BOOT_MOUNT, Some("vfat"), flags, None::<&str>).is_err() {
        return Ok(());
    }
    let boot_dir = Path::new(BOOT_MOUNT);
    let plan_path = boot_dir.join(PLAN_FILE);
    let result = match std::fs::read_to_string(&plan_path) {
        Ok(text) => carry_out(root, &text, boot_dir),
        Err(_) => match state::State::read(boot_dir) {
            // A state without its plan: provisioning was under way and the plan was removed
            // (by hand, on a card reader). Fail closed rather than boot a half-encrypted root.
            Ok(Some(_)) => Err("provisioning state found without its plan".into()),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
    };
    nix::unistd::sync();
    let _ = umount(BOOT_MOUNT);
    result
}

fn carry_out(root: &Path, text: &str, boot: &Path) -> Result<(), String> {
    let plan = plan::parse(text).map_err(|e| format!("provisioning plan refused: {e}"))?;
    if let Some(state) = state::State::read(boot)? {
        match (&plan.mode, state.stage) {
            (Mode::Fresh(image), state::Stage::Formatting) => {
                fresh::resume(root, &plan, image, state, boot)?
            }
            (Mode::Fresh(image), _) => fresh::resume_enrolment(root, &plan, image, state, boot)?,
            (_, state::Stage::Formatting) => {
                return Err("provisioning state is formatting but the plan is not fresh".into());
            }
            _ => in_place::resume(root, &plan, state, boot)?,
        }
        return done(boot);
    }
    if unlock::is_luks(root)? {
        if !plan.re_enrol {
            console::say("keybound: provisioning refused: root is already sealed (use --re-enrol)");
            return remove_plan(boot);
        }
        if let Err(why) = check_binding(&plan) {
            console::say(&format!("keybound: provisioning refused: {why}"));
            return remove_plan(boot);
        }
        re_enrol(root, &plan)?;
        return done(boot);
    }
    if plan.re_enrol {
        console::say("keybound: provisioning refused: root is not sealed, nothing to re-enrol");
        return remove_plan(boot);
    }
    if let Err(why) = check_binding(&plan) {
        console::say(&format!("keybound: provisioning refused: {why}"));
        return remove_plan(boot);
    }
    if let Mode::Fresh(image) = &plan.mode {
        // Nothing is written before the image is checked: a missing, damaged or too large
        // image refuses the plan and the card boots as it was.
        let checked = match fresh::check_image(root, image, boot) {
            Ok(checked) => checked,
            Err(why) => {
                console::say(&format!("keybound: provisioning refused: {why}"));
                return remove_plan(boot);
            }
        };
        fresh::start(root, &plan, boot, checked)?;
        return done(boot);
    }
    // Nothing is written before the room check: a full or damaged root refuses the plan and
    // boots on unsealed, so the factory sees why instead of a board that powers off.
    let checked = match in_place::check_room(root) {
        Ok(checked) => checked,
        Err(why) => {
            console::say(&format!("keybound: provisioning refused: {why}"));
            return remove_plan(boot);
        }
    };
    in_place::start(root, &plan, boot, checked)?;
    done(boot)
}

/// Before anything is sealed: a plan that demands production binding is refused unless the
/// module present is in production mode (binding tab cut: locked) and bound to this board. A
/// module left in developer mode rebinds to whatever host it sits on, so a card and module
/// moved together to another Pi would unlock there (DESIGN.md §7); a factory that forgot to cut
/// the tab must learn it now, not in the field.
fn check_binding(plan: &Plan) -> Result<(), String> {
    if !plan.production_binding {
        return Ok(());
    }
    // Planted bug binding-unchecked (issue 8): the demand is never checked. Caught by scenario
    // attacks/developer-zymkey-refused-at-provisioning.
    #[cfg(keybound_mutant = "binding-unchecked")]
    return Ok(());
    #[cfg(not(keybound_mutant = "binding-unchecked"))]
    {
        let info = unlock::with_zymkey(|zk| Ok(zk.binding_info()?))
            .map_err(|e| format!("cannot read the zymkey binding: {}", unlock::reason(&e)))?;
        if !info.locked {
            return Err(
                "the zymkey is in developer mode (binding tab intact) but the plan \
                        requires production binding"
                    .into(),
            );
        }
        if !info.bound {
            return Err("the zymkey is bound to another board".into());
        }
        Ok(())
    }
}

fn done(boot: &Path) -> Result<(), String> {
    remove_plan(boot)?;
    console::say("keybound-init: provisioning: done");
    Ok(())
}

/// A new sealed secret for the module present and a new recovery secret for the plan's
/// recipient; the volume key (and so the data) stays. Idempotent: a cut and a second run
/// re-enrol again from whichever token the header holds.
fn re_enrol(root: &Path, plan: &Plan) -> Result<(), String> {
    console::say("keybound-init: provisioning: re-enrolling the sealed root");
    let recipient = age::x25519::Recipient::from_str(&plan.recipient)
        .map_err(|_| "provisioning: bad recipient".to_string())?;
    unlock::with_zymkey(|zk| {
        let unsealed = sealed_root::unseal(root, zk)?;
        sealed_root::re_enroll(root, &unsealed, zk, &recipient, RecoveryKdf::Production)
    })
    .map_err(|e| format!("provisioning: re-enrolment: {}", unlock::reason(&e)))?;
    perimeter::arm(&plan.perimeter)
}

fn remove_plan(boot: &Path) -> Result<(), String> {
    std::fs::remove_file(boot.join(PLAN_FILE))
        .map_err(|e| format!("removing the provisioning plan: {e}"))?;
    // vfat: only a full sync writes the directory entry the unlink changed.
    nix::unistd::sync();
    Ok(())
}

/// Runs a tool of the initramfs; `ok` says which exit codes are success.
fn tool(program: &str, args: &[&str], ok: &[i32]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("provisioning: running {program}: {e}"))?;
    match out.status.code() {
        Some(c) if ok.contains(&c) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        code => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("").trim();
            Err(format!("provisioning: {program} failed ({code:?}): {last}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_is_partition_one_of_the_same_disk() {
        assert_eq!(
            boot_partition(Path::new("/dev/vda2")),
            Path::new("/dev/vda1")
        );
        assert_eq!(
            boot_partition(Path::new("/dev/mmcblk0p2")),
            Path::new("/dev/mmcblk0p1")
        );
    }
}
