//! Judging expectations against what a step's action reported.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use super::bench::Facts;
use super::result::Verdict;
use super::target::{BootOutcome, LoginFacts, ScenarioBoard, StepError};
use crate::Expectation;

/// A shell prompt on the console: `$ `/`# ` at the end of a line (busybox, bash, initramfs),
/// possibly followed by busybox's cursor-position query.
pub(crate) const SHELL_PROMPT: &str = r"(^|[\s~/:)\]])[$#] ?(\x1b\[6n)?$";

fn regex(pattern: &str) -> Result<Regex, Verdict> {
    Regex::new(pattern).map_err(|e| Verdict::Error(format!("invalid regex /{pattern}/: {e}")))
}

fn need<'a, T>(fact: &'a Option<T>, what: &str) -> Result<&'a T, Verdict> {
    fact.as_ref()
        .ok_or_else(|| Verdict::Error(format!("the step reported no {what}")))
}

/// The board-side context of a step: its subject board and the console mark at the step's start.
pub(crate) struct Subject<'a> {
    pub(crate) board: Option<&'a mut Box<dyn ScenarioBoard>>,
    pub(crate) mark: board::Mark,
}

/// Judges one expectation.
pub(crate) fn judge(
    expect: &Expectation,
    facts: &Facts,
    subject: &mut Subject<'_>,
    logins: &BTreeMap<String, LoginFacts>,
) -> Verdict {
    match check(expect, facts, subject, logins) {
        Ok(()) => Verdict::Pass,
        Err(v) => v,
    }
}

fn fail(reason: impl Into<String>) -> Result<(), Verdict> {
    Err(Verdict::Fail(reason.into()))
}

fn check(
    expect: &Expectation,
    facts: &Facts,
    subject: &mut Subject<'_>,
    logins: &BTreeMap<String, LoginFacts>,
) -> Result<(), Verdict> {
    match expect {
        Expectation::Unlocked => match need(&facts.boot, "boot outcome")? {
            BootOutcome::Up => Ok(()),
            other => fail(format!("expected the board up, but it was {other:?}")),
        },
        Expectation::Sealed { reason } => match need(&facts.boot, "boot outcome")? {
            BootOutcome::Sealed { reason: said } => match reason {
                Some(want) if !said.contains(want.as_str()) => fail(format!(
                    "sealed, but the reason {said:?} does not mention {want:?}"
                )),
                _ => Ok(()),
            },
            other => fail(format!("expected sealed, but the board was {other:?}")),
        },
        Expectation::PoweredOff => {
            let board = subject
                .board
                .as_mut()
                .ok_or_else(|| Verdict::Error("no board".into()))?;
            if board.is_powered() {
                fail(format!("{} is still powered", board.name()))
            } else {
                Ok(())
            }
        }
        Expectation::LoginGranted => {
            let login = need(&facts.login, "login")?;
            if login.granted {
                Ok(())
            } else {
                fail(format!(
                    "login denied{}; the client saw: {}",
                    if login.timed_out { " (timed out)" } else { "" },
                    login.messages.trim()
                ))
            }
        }
        Expectation::LoginDenied => {
            let login = need(&facts.login, "login")?;
            if login.granted {
                fail("login granted")
            } else if login.timed_out {
                // The row asks for a denial within the time limit: a hang is not a denial.
                fail("the client gave up waiting: the board never answered (a hang, not a denial)")
            } else {
                Ok(())
            }
        }
        Expectation::PromptsSeen(want) => {
            let got = &need(&facts.login, "login")?.prompts;
            let matches = got.len() == want.len()
                && want
                    .iter()
                    .zip(got)
                    .map(|(w, g)| regex(w).map(|r| r.is_match(g)))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .all(|m| m);
            if matches {
                Ok(())
            } else {
                fail(format!("prompts were {got:?}, expected {want:?}"))
            }
        }
        Expectation::ExchangesIdentical { with } => {
            let mine = need(&facts.login, "login")?;
            let theirs = logins
                .get(with)
                .ok_or_else(|| Verdict::Error(format!("step `{with}` recorded no login")))?;
            if mine.prompts != theirs.prompts {
                fail(format!(
                    "prompts differ: {:?} here, {:?} in `{with}`",
                    mine.prompts, theirs.prompts
                ))
            } else if mine.messages.trim() != theirs.messages.trim() {
                fail(format!(
                    "messages differ: {:?} here, {:?} in `{with}`",
                    mine.messages.trim(),
                    theirs.messages.trim()
                ))
            } else {
                Ok(())
            }
        }
        Expectation::ConsoleRegex(pattern) => {
            let board = subject
                .board
                .as_ref()
                .ok_or_else(|| Verdict::Error("no board".into()))?;
            regex(pattern)?;
            match board
                .console()
                .expect_guest_after(subject.mark, pattern, Duration::ZERO)
            {
                Ok(_) => Ok(()),
                Err(_) => fail(format!(
                    "the console never showed /{pattern}/ during the step"
                )),
            }
        }
        Expectation::StdoutRegex(pattern) => {
            let out = need(&facts.stdout, "output")?;
            if regex(pattern)?.is_match(out) {
                Ok(())
            } else {
                fail(format!(
                    "output does not match /{pattern}/: {:?}",
                    out.chars().take(300).collect::<String>()
                ))
            }
        }
        Expectation::NoShell => {
            let board = subject
                .board
                .as_ref()
                .ok_or_else(|| Verdict::Error("no board".into()))?;
            match board
                .console()
                .expect_guest_after(subject.mark, SHELL_PROMPT, Duration::ZERO)
            {
                Ok((line, _)) => fail(format!("a shell prompt appeared: {line:?}")),
                Err(_) => Ok(()),
            }
        }
        Expectation::NoKeyMaterial => {
            let (found, searched) = need(&facts.scan, "scan")?;
            if *searched == 0 {
                Err(Verdict::Skip(
                    "no secret known to search for (needs a provisioned board)".into(),
                ))
            } else if found.is_empty() {
                Ok(())
            } else {
                fail(format!("found on the card: {}", found.join(", ")))
            }
        }
        Expectation::KeyExfiltrated => match need(&facts.exfiltration, "exfiltration proof")? {
            Ok(Some(_)) => Ok(()),
            Ok(None) => fail(
                "nothing the attacker left on the card opens its root volume (the attack failed)",
            ),
            Err(StepError::Unsupported(why)) => Err(Verdict::Skip(why.clone())),
            Err(StepError::Failed(why)) => Err(Verdict::Error(format!(
                "proving the exfiltration on the host: {why}"
            ))),
        },
        Expectation::TokenNotAsked(token) => match facts.token_requests.get(token) {
            Some(0) => Ok(()),
            Some(n) => fail(format!(
                "token {token} answered {n} request(s) during the step"
            )),
            None => Err(Verdict::Error(format!(
                "token {token}'s request count could not be read"
            ))),
        },
    }
}
