//! Arming the Zymkey's perimeter (tamper) policy the plan carries, after enrolment.

use zymkey::{PerimeterActions, PerimeterChannel};

use crate::{console, unlock};

/// Clears latched perimeter events (a breach before arming, e.g. while the case was open for
/// provisioning, must not fire the new policy), then sets each channel's actions. Nothing to
/// do for an empty policy.
pub(super) fn arm(policy: &[(PerimeterChannel, PerimeterActions)]) -> Result<(), String> {
    if policy.is_empty() {
        return Ok(());
    }
    unlock::with_zymkey(|zk| {
        zk.clear_perimeter_events()?;
        for (channel, actions) in policy {
            zk.set_perimeter_actions(*channel, *actions)?;
        }
        Ok(())
    })
    .map_err(|e| format!("provisioning: arming the perimeter: {}", unlock::reason(&e)))?;
    let described: Vec<String> = policy
        .iter()
        .map(|(c, a)| format!("{}={}", channel_name(*c), actions_name(*a)))
        .collect();
    console::say(&format!(
        "keybound-init: provisioning: perimeter armed ({})",
        described.join(",")
    ));
    Ok(())
}

fn channel_name(c: PerimeterChannel) -> &'static str {
    match c {
        PerimeterChannel::Zero => "ch0",
        PerimeterChannel::One => "ch1",
    }
}

/// The plan's spelling of the actions.
pub(super) fn actions_name(a: PerimeterActions) -> &'static str {
    match (a.notify, a.self_destruct) {
        (false, false) => "none",
        (true, false) => "notify",
        (false, true) => "self-destruct",
        (true, true) => "notify+self-destruct",
    }
}
