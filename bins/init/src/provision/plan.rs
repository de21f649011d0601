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
    /// Format fresh (destroys the data) instead of encrypting in place.
    pub(crate) fresh: bool,
    /// Replace an existing enrolment.
    pub(crate) re_enrol: bool,
    /// Perimeter actions to arm after enrolment, per channel (none: leave the module as it is).
    pub(crate) perimeter: Vec<(PerimeterChannel, PerimeterActions)>,
    /// `binding=production`: seal only to a module in production mode (binding tab cut, bound
    /// to this board); `binding=any` or no such line: any module.
    pub(crate) production_binding: bool,
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
    let fresh = match mode.as_deref() {
        Some("in-place") => false,
        Some("fresh") => true,
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
        fresh,
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
        assert!(!plan.fresh && !plan.re_enrol && plan.perimeter.is_empty());
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
