//! A scenario in words (`keybound-lab explain FILE`).

use std::fmt::Write;

use crate::schema::{Binding, CardEdit, Presence, ZymkeyFault as Fault};
use crate::{Action, Expectation, Scenario, Step};

/// The action in words.
pub fn action(action: &Action) -> String {
    use Action::*;
    match action {
        Boot { board } => format!("power on {board} and wait until it is up, sealed or off"),
        PowerOn { board } => format!("power on {board}"),
        PowerOff { board } => format!("shut {board} down cleanly"),
        PowerCut { board } => format!("cut {board}'s power"),
        Provision { board } => format!("provision {board} (seal its root key with its Zymkey)"),
        MoveCard { from, to } => format!("move the card from {from} to {to}"),
        CopyCard { from, to } => format!("copy {from}'s card onto a new card and put it in {to}"),
        RemoveCard { board, shelf } => format!(
            "take the card out of {board} (shelf \"{}\")",
            shelf.as_deref().unwrap_or(board)
        ),
        InsertCard { board, shelf } => format!(
            "put the card from shelf \"{}\" into {board}",
            shelf.as_deref().unwrap_or(board)
        ),
        EditBootFile { board, file, edit } => match edit {
            CardEdit::Append(text) => format!("on {board}'s card, append {text:?} to {file}"),
            CardEdit::Content(text) => format!("on {board}'s card, replace {file} with {text:?}"),
            CardEdit::Replace([from, to]) => {
                format!("on {board}'s card, replace {from:?} by {to:?} in {file}")
            }
            CardEdit::HarnessFile(name) => {
                format!("on {board}'s card, replace {file} with the harness's {name}")
            }
        },
        ScanCard { board } => {
            format!("read {board}'s card on the host and search it for key material")
        }
        ZymkeyCutTab { board } => format!("cut the binding tab of {board}'s Zymkey (production)"),
        ZymkeyBreach { board, channel } => {
            format!("break perimeter channel {channel} of {board}'s Zymkey")
        }
        ZymkeyFault { board, fault } => {
            let what = match fault {
                Fault::Fail { count, code } => format!("fail the next {count} calls with {code}"),
                Fault::Delay { count, ms } => format!("answer the next {count} calls {ms} ms late"),
                Fault::BitFlip { count } => format!("flip a bit in the next {count} answers"),
                Fault::Drop { count } => format!("drop the connection on the next {count} calls"),
                Fault::Crash => {
                    "die during the next call (it restarts at the next power-on)".into()
                }
                Fault::Clear => "clear every fault".into(),
            };
            format!("make {board}'s Zymkey {what}")
        }
        ZymkeySpoof { board, like } => {
            format!("make {board}'s Zymkey host software report {like}'s fingerprint")
        }
        ZymkeyAttach { board } => format!("seat {board}'s Zymkey on its header"),
        RestoreCard { board, shelf } => {
            format!("write the old card image from shelf {shelf} back onto {board}'s card")
        }
        VendorSignBoot { board } => {
            format!("the vendor signs a new boot.img from {board}'s current boot files")
        }
        ZymkeySniff { board } => {
            format!("clip a logic analyser onto {board}'s GPIO header (record the Zymkey bus)")
        }
        ZymkeyDetach { board } => format!("take {board}'s Zymkey off its header"),
        ZymkeyMove { from, to } => format!("move the Zymkey from {from} to {to}"),
        TokenPlug { token, board } => format!("plug token {token} into {board}"),
        TokenUnplug { token } => format!("unplug token {token}"),
        TokenPresence { token, answer } => {
            let what = match answer {
                Presence::Touch => "touch it",
                Presence::Deny => "refuse presence",
                Presence::Timeout => "never touch it",
            };
            format!("from now on, when token {token} asks for presence, {what}")
        }
        TokenFault {
            token,
            fault,
            count,
        } => {
            let what = match fault {
                crate::TokenFault::Corrupt => "scramble",
                crate::TokenFault::Oversize => "oversize",
                crate::TokenFault::Stall => "never send",
                crate::TokenFault::Drop => "be pulled half-way through",
                crate::TokenFault::WrongRp => "sign for another relying party in",
                crate::TokenFault::Clear => return format!("clear token {token}'s faults"),
            };
            let replies = if *count == 1 {
                "its next reply".to_string()
            } else {
                format!("its next {count} replies")
            };
            format!("make token {token} {what} {replies}")
        }
        TokenClone { token, into } => format!("clone token {token} into {into}"),
        ConsoleSend { board, text } => format!("type {text:?} on {board}'s console"),
        ConsoleExpect { board, pattern } => {
            format!("wait for /{pattern}/ on {board}'s console")
        }
        SshLogin {
            board,
            user,
            answers,
            command,
        } => format!(
            "log in to {board} over ssh as {user}, answering {} and running `{command}`",
            if answers.is_empty() {
                "no prompt".to_string()
            } else {
                answers
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(" then ")
            }
        ),
        ConsoleLogin {
            board,
            user,
            password,
        } => format!("log in on {board}'s serial console as {user} with password {password:?}"),
        MaintenanceExec { board, command } => {
            format!("on {board}'s test-only maintenance channel, run `{command}`")
        }
        Wait { duration } => format!("wait {duration}"),
    }
}

/// An expectation in words.
pub fn expectation(e: &Expectation) -> String {
    match e {
        Expectation::Unlocked => "it comes up on its root file system".into(),
        Expectation::Sealed { reason: None } => "it stays sealed".into(),
        Expectation::Sealed { reason: Some(r) } => format!("it stays sealed, saying {r:?}"),
        Expectation::PoweredOff => "the board is off".into(),
        Expectation::LoginGranted => "the login is granted".into(),
        Expectation::LoginDenied => "the login is denied (before the client gives up)".into(),
        Expectation::PromptsSeen(p) => format!(
            "the client is asked {}",
            p.iter()
                .map(|p| format!("/{p}/"))
                .collect::<Vec<_>>()
                .join(" then ")
        ),
        Expectation::ExchangesIdentical { with } => {
            format!("the client sees exactly what it saw in step `{with}`")
        }
        Expectation::ConsoleRegex(p) => format!("the console shows /{p}/"),
        Expectation::TokenNotAsked(t) => format!("token {t} receives no request"),
        Expectation::StdoutRegex(p) => format!("the output matches /{p}/"),
        Expectation::NoShell => "no shell prompt appears".into(),
        Expectation::NoKeyMaterial => "no key material is on the card".into(),
        Expectation::KeyExfiltrated => "the key got out (proved on the host)".into(),
    }
}

/// One step in words.
pub fn step(step: &Step) -> String {
    let mut line = action(&step.action);
    if let Some(id) = &step.id {
        line = format!("[{id}] {line}");
    }
    if let Some(t) = step.timeout {
        let _ = write!(line, " (within {t})");
    }
    if !step.expect.is_empty() {
        let expects: Vec<String> = step.expect.iter().map(expectation).collect();
        let _ = write!(line, "; expect: {}", expects.join(", and "));
    }
    line
}

/// The whole scenario in words.
pub fn explain(scenario: &Scenario) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", scenario.title);
    if !scenario.tags.is_empty() {
        let _ = writeln!(out, "tags: {}", scenario.tags.join(", "));
    }
    if let Some(about) = &scenario.about {
        let _ = writeln!(out, "\n{}", about.trim());
    }
    let _ = writeln!(out, "\nBoards:");
    for (name, spec) in &scenario.boards {
        let zymkey = match &spec.zymkey {
            None => "no Zymkey".to_string(),
            Some(z) => match z.binding {
                Binding::Developer => "a Zymkey in developer mode".into(),
                Binding::Production => "a Zymkey in production mode (tab cut)".into(),
            },
        };
        let signed = if spec.signed_boot {
            ", signed boot"
        } else {
            ""
        };
        let card = match spec.card {
            crate::CardSlot::Fresh => "a fresh card",
            crate::CardSlot::Empty => "an empty card slot",
        };
        let _ = writeln!(
            out,
            "  {name}: a {:?} with {card}, {zymkey}{signed}",
            spec.profile
        );
    }
    for (name, spec) in &scenario.tokens {
        let on = if spec.enrolled_on.is_empty() {
            "enrolled nowhere".to_string()
        } else {
            format!("enrolled on {}", spec.enrolled_on.join(", "))
        };
        let _ = writeln!(out, "  token {name}: {on}");
    }
    let _ = writeln!(out, "\nSteps:");
    for (i, s) in scenario.steps.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}. {}", i + 1, step(s));
    }
    out
}
