//! The plan `keybound provision` leaves on the boot partition (`key=value` lines, version 1).
//! It holds no secret; it is parsed strictly (unknown or repeated keys refuse the plan).

use std::str::FromStr;

use sealed_root::BoardProfile;
use zymkey::{PerimeterActions, PerimeterChannel};

/// The plan's file name on the boot partition.
pub(crate) const PLAN_FILE: &str = "keybound-provision.plan";

/// What the plan asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The vendor's age recipient for the recovery slot.
    pub(crate) recipient: String,
    /// The data cipher by board.
    pub(crate) profile: BoardProfile,
    /// Encrypt the root in place, or format it fresh (destroying its data) from an image.
    pub(crate) mode: Mode,
    /// Replace an existing enrolment.
    pub(crate) re_enrol: bool,
    /// Perimeter actions to arm after enrolment, per channel (none: leave the module as it is).
    pub(crate) perimeter: Vec<(PerimeterChannel, PerimeterActions)>,
    /// `binding=production`: seal only to a module in production mode (binding tab cut, bound
    /// to this board); `binding=any` or no such line: any module.
    pub(crate) production_binding: bool,
}

/// How root gets encrypted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The data on root is kept: encrypted in place.
    InPlace,
    /// Root is formatted anew and filled from the vendor's root image on the boot partition:
    /// no plaintext of the system is ever written to root.
    Fresh(RootImage),
}

/// The vendor's root filesystem image a fresh provisioning writes into the new volume.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RootImage {
    /// Its file name on the boot partition (a plain name, no directories).
    pub(crate) name: String,
    /// Its length in bytes.
    pub(crate) bytes: u64,
    /// Its SHA-256: a damaged or swapped image is refused before root is touched.
    pub(crate) sha256: [u8; 32],
}

/// Parses the three `root-image*` lines of a fresh plan.
fn parse_root_image(
    name: Option<String>,
    bytes: Option<String>,
    sha256: Option<String>,
) -> Result<RootImage, String> {
    let name = name.ok_or("a fresh plan needs root-image")?;
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err("plan root-image must be a plain file name".into());
    }
    let bytes = bytes
        .ok_or("a fresh plan needs root-image-bytes")?
        .parse::<u64>()
        .ok()
        .filter(|b| *b > 0)
        .ok_or("plan root-image-bytes is not a positive number")?;
    let hex = sha256.ok_or("a fresh plan needs root-image-sha256")?;
    let mut sha256 = [0u8; 32];
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("plan root-image-sha256 is not 64 hex digits".into());
    }
    for (i, byte) in sha256.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| "plan root-image-sha256 is not hex")?;
    }
    Ok(RootImage {
        name,
        bytes,
        sha256,
    })
}

/// Parses perimeter actions: `none`, `notify`, `self-destruct` or `notify+self-destruct`.
fn parse_actions(value: &str) -> Result<PerimeterActions, String> {
    let mut actions = PerimeterActions::default();
    if value == "none" {
        return Ok(actions);
    }
    for part in value.split('+') {
        match part {
            "notify" if !actions.notify => actions.notify = true,
            "self-destruct" if !actions.self_destruct => actions.self_destruct = true,
            _ => {
                return Err(format!(
                    "perimeter action `{part}` is not notify or self-destruct"
                ));
            }
        }
    }
    Ok(actions)
}

/// Parses a plan.
pub(crate) fn parse(text: &str) -> Result<Plan, String> {
    let (mut version, mut recipient, mut profile, mut mode, mut re_enrol) =
        (None, None, None, None, None);
    let (mut ch0, mut ch1, mut binding) = (None, None, None);
    let (mut image, mut image_bytes, mut image_sha256) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("plan line without '=': {line}"))?;
        let slot = match key.trim() {
            "version" => &mut version,
            "recipient" => &mut recipient,
            "profile" => &mut profile,
            "mode" => &mut mode,
            "re-enrol" => &mut re_enrol,
            "perimeter-ch0" => &mut ch0,
            "perimeter-ch1" => &mut ch1,
            "binding" => &mut binding,
            "root-image" => &mut image,
            "root-image-bytes" => &mut image_bytes,
            "root-image-sha256" => &mut image_sha256,
            other => return Err(format!("unknown plan key {other}")),
        };
        if slot.replace(value.trim().to_string()).is_some() {
            return Err(format!("plan key {} given twice", key.trim()));
        }
    }
    if version.as_deref() != Some("1") {
        return Err("plan version is not 1".into());
    }
    let recipient = recipient.ok_or("plan has no recipient")?;
    age::x25519::Recipient::from_str(&recipient)
        .map_err(|_| "plan recipient is not an age X25519 recipient".to_string())?;
    let profile = match profile.as_deref() {
        Some("pi5") => BoardProfile::AesXts,
        Some("pi4") => BoardProfile::Adiantum,
        _ => return Err("plan profile must be pi4 or pi5".into()),
    };
    let mode = match mode.as_deref() {
        Some("in-place") if image.is_none() && image_bytes.is_none() && image_sha256.is_none() => {
            Mode::InPlace
        }
        Some("in-place") => return Err("an in-place plan names no root image".into()),
        Some("fresh") => Mode::Fresh(parse_root_image(image, image_bytes, image_sha256)?),
        _ => return Err("plan mode must be in-place or fresh".into()),
    };
    let re_enrol = match re_enrol.as_deref() {
        None | Some("no") => false,
        Some("yes") => true,
        Some(_) => return Err("plan re-enrol must be yes or no".into()),
    };
    let mut perimeter = Vec::new();
    for (channel, value) in [(PerimeterChannel::Zero, ch0), (PerimeterChannel::One, ch1)] {
        if let Some(value) = value {
            perimeter.push((channel, parse_actions(&value)?));
        }
    }
    let production_binding = match binding.as_deref() {
        None | Some("any") => false,
        Some("production") => true,
        Some(_) => return Err("plan binding must be production or any".into()),
    };
    Ok(Plan {
        recipient,
        profile,
        mode,
        re_enrol,
        perimeter,
        production_binding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn plans_parse_strictly() {
        let plan = parse(&format!(
            "# keybound\nversion=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=in-place\n"
        ))
        .unwrap();
        assert_eq!(plan.profile, BoardProfile::AesXts);
        assert!(plan.mode == Mode::InPlace && !plan.re_enrol && plan.perimeter.is_empty());
        assert!(!plan.production_binding);
        let production = parse(&format!(
            "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=in-place\nbinding=production\n"
        ))
        .unwrap();
        assert!(production.production_binding);
        for bad in [
            format!("recipient={RECIPIENT}\nprofile=pi5\nmode=in-place\n"),
            "version=1\nrecipient=age1nope\nprofile=pi5\nmode=in-place\n".to_string(),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi3\nmode=in-place\n"),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=wipe\n"),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\nmode=in-place\n"),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\nshell=yes\n"),
            format!(
                "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\n{IMAGE}root-image=../x\n"
            ),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=in-place\n{IMAGE}"),
            format!(
                "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\nroot-image=r.img\n"
            ),
            format!(
                "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\nroot-image=r.img\n\
                 root-image-bytes=0\nroot-image-sha256={}\n",
                "ab".repeat(32)
            ),
            format!(
                "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\nroot-image=r.img\n\
                 root-image-bytes=10\nroot-image-sha256={}\n",
                "zz".repeat(32)
            ),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=in-place\nbinding=lab\n"),
            format!(
                "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=in-place\nperimeter-ch0=explode\n"
            ),
            format!(
                "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=in-place\nperimeter-ch2=notify\n"
            ),
            format!(
                "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=in-place\nperimeter-ch1=notify+notify\n"
            ),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }

    /// The `root-image*` lines of a fresh plan (a leading copy of `root-image` makes it twice).
    const IMAGE: &str = "root-image-bytes=4096\nroot-image-sha256=\
        00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

    #[test]
    fn fresh_plans_name_their_root_image() {
        let plan = parse(&format!(
            "version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\n\
             root-image=keybound-root.img\n{IMAGE}"
        ))
        .unwrap();
        let Mode::Fresh(image) = plan.mode else {
            panic!("not fresh: {plan:?}");
        };
        assert_eq!(image.name, "keybound-root.img");
        assert_eq!(image.bytes, 4096);
        assert_eq!(image.sha256[..4], [0x00, 0x11, 0x22, 0x33]);
    }

    #[test]
    fn perimeter_actions_are_read_per_channel() {
        let plan = parse(&format!(
            "version=1\nrecipient={RECIPIENT}\nprofile=pi4\nmode=in-place\n\
             perimeter-ch0=notify+self-destruct\nperimeter-ch1=none\n"
        ))
        .unwrap();
        assert_eq!(plan.profile, BoardProfile::Adiantum);
        assert_eq!(
            plan.perimeter,
            vec![
                (
                    PerimeterChannel::Zero,
                    PerimeterActions {
                        notify: true,
                        self_destruct: true
                    }
                ),
                (PerimeterChannel::One, PerimeterActions::default()),
            ]
        );
    }
}
