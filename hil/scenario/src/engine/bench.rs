//! The boards of one running scenario, and what each step does to them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::target::{
    BootOutcome, LoginFacts, ScenarioBoard, ScenarioCard, ScenarioToken, StepError, ZymkeyOp,
};
use super::{Shared, lock};
use crate::engine::result::{BoardRecord, Milestone};
use crate::{Action, CardEdit};

/// What an action reported, for its expectations.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    pub(crate) boot: Option<BootOutcome>,
    pub(crate) login: Option<LoginFacts>,
    pub(crate) stdout: Option<String>,
    /// Labels of secrets found, and how many were searched for.
    pub(crate) scan: Option<(Vec<String>, usize)>,
    /// The host-side proof that a key left on the card opens its root (scan-card), if any.
    pub(crate) exfiltration: Option<Result<Option<String>, StepError>>,
    /// Requests each token answered during the step.
    pub(crate) token_requests: BTreeMap<String, u64>,
    pub(crate) detail: Option<String>,
}

/// The boards, the shelf of cards out of any board, and logins by step id. Dropping it records
/// every board's console and powers everything off, also when a step panicked.
pub(crate) struct Bench {
    pub(crate) boards: BTreeMap<String, Box<dyn ScenarioBoard>>,
    pub(crate) created: BTreeMap<String, Duration>,
    pub(crate) shelf: BTreeMap<String, Box<dyn ScenarioCard>>,
    pub(crate) tokens: BTreeMap<String, Box<dyn ScenarioToken>>,
    /// Which board each plugged token is in.
    pub(crate) plugged: BTreeMap<String, String>,
    /// Boards each token is to be enrolled on (from `[tokens]`), and the cards (by id) it has
    /// been enrolled on so far.
    pub(crate) enrol_on: BTreeMap<String, Vec<String>>,
    pub(crate) enrolled: std::collections::BTreeSet<(String, String)>,
    /// The running step expects `key-exfiltrated` (the proof is costly: made only then).
    pub(crate) want_proof: bool,
    pub(crate) logins: BTreeMap<String, LoginFacts>,
    /// Per board, where `console-expect` looks from: after the last match, or the power-on.
    pub(crate) cursors: BTreeMap<String, board::Mark>,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

/// The user a token declared `enrolled-on` a board is enrolled for (the image's technician).
pub(crate) const ENROLLED_USER: &str = "tech";

/// Console lines worth a timeline mark.
fn is_milestone(text: &str) -> bool {
    text.starts_with("[harness]")
        || text.contains("keybound-")
        || text.contains(" login: ")
        || text.contains("Login incorrect")
        || text.contains("Kernel panic")
}

impl Drop for Bench {
    fn drop(&mut self) {
        let mut records = Vec::new();
        for (name, board) in self.boards.iter_mut() {
            if board.is_powered() {
                board.console().note("teardown: power cut");
                let _ = board.power_cut();
            }
            let offset = self.created.get(name).copied().unwrap_or_default();
            let lines = board.console().lines();
            let tail = lines
                .iter()
                .rev()
                .take(15)
                .rev()
                .map(|l| l.text.clone())
                .collect();
            let milestones = lines
                .iter()
                .filter(|l| is_milestone(&l.text))
                .map(|l| Milestone {
                    at: offset + l.at,
                    text: l.text.clone(),
                })
                .collect();
            records.push(BoardRecord {
                name: name.clone(),
                transcript: board.transcript(),
                tail,
                milestones,
            });
        }
        lock(&self.shared).boards = records;
        // The boards (and everything they run) go now, then the tokens.
        self.boards.clear();
        self.tokens.clear();
    }
}

impl Bench {
    fn board(&mut self, name: &str) -> Result<&mut Box<dyn ScenarioBoard>, StepError> {
        self.boards
            .get_mut(name)
            .ok_or_else(|| StepError::Failed(format!("no board {name}")))
    }

    fn off(&mut self, name: &str, what: &str) -> Result<&mut Box<dyn ScenarioBoard>, StepError> {
        let board = self.board(name)?;
        if board.is_powered() {
            return Err(StepError::Failed(format!(
                "{name} is powered: power it off before you {what}"
            )));
        }
        Ok(board)
    }

    /// Runs `f` on the card of board `name` (which must be off).
    fn with_card<T>(
        &mut self,
        name: &str,
        what: &str,
        mut f: impl FnMut(&mut dyn ScenarioCard) -> Result<T, StepError>,
    ) -> Result<T, StepError> {
        let mut out = None;
        self.off(name, what)?.with_card(&mut |card| {
            out = Some(f(card)?);
            Ok(())
        })?;
        out.ok_or_else(|| StepError::Failed(format!("{name}: the card was not handled")))
    }

    fn token(&mut self, name: &str) -> Result<&mut Box<dyn ScenarioToken>, StepError> {
        self.tokens
            .get_mut(name)
            .ok_or_else(|| StepError::Failed(format!("no token {name}")))
    }

    /// Requests answered so far by each token.
    pub(crate) fn token_requests(&self) -> BTreeMap<String, u64> {
        self.tokens
            .iter()
            .filter_map(|(name, t)| t.requests().ok().map(|n| (name.clone(), n)))
            .collect()
    }

    /// Plugs `token` into `board`; the first time it meets a card it is declared enrolled on,
    /// the harness enrols it there (as the vendor's technician would, once).
    fn plug(&mut self, token: &str, board: &str) -> Result<String, StepError> {
        if let Some(other) = self.plugged.get(token) {
            return Err(StepError::Failed(format!(
                "token {token} is already plugged into {other}"
            )));
        }
        let t = self
            .tokens
            .get(token)
            .ok_or_else(|| StepError::Failed(format!("no token {token}")))?;
        let b = self
            .boards
            .get_mut(board)
            .ok_or_else(|| StepError::Failed(format!("no board {board}")))?;
        if !b.is_powered() {
            return Err(StepError::Failed(format!(
                "{board} is off: power it on before plugging a token"
            )));
        }
        b.plug_token(token, &**t)?;
        self.plugged.insert(token.to_string(), board.to_string());
        let card = b.card_serial().unwrap_or_default();
        let wanted = self
            .enrol_on
            .get(token)
            .is_some_and(|boards| boards.iter().any(|x| x == board));
        let key = (token.to_string(), card);
        if wanted && !self.enrolled.contains(&key) {
            let said = b.enrol_token(token, &**t, ENROLLED_USER)?;
            self.enrolled.insert(key);
            return Ok(format!(
                "plugged; enrolled for {ENROLLED_USER} (first plug into this card): {}",
                said.trim()
            ));
        }
        Ok("plugged".into())
    }

    /// Runs one action within `limit`; `aborted` says the supervisor gave up on the step.
    pub(crate) fn exec(
        &mut self,
        action: &Action,
        limit: Duration,
        step_dir: &std::path::Path,
        aborted: &dyn Fn() -> bool,
    ) -> Result<Facts, StepError> {
        let mut facts = Facts::default();
        match action {
            Action::Boot { board } => {
                let b = self.board(board)?;
                let mark = b.console().mark();
                b.power_on()?;
                let outcome = b.wait_boot(mark, limit)?;
                let after = b.console().mark();
                self.cursors.insert(board.clone(), after);
                facts.detail = Some(format!("{outcome:?}"));
                facts.boot = Some(outcome);
            }
            Action::PowerOn { board } => {
                let b = self.board(board)?;
                let mark = b.console().mark();
                b.power_on()?;
                self.cursors.insert(board.clone(), mark);
            }
            Action::PowerOff { board } => self.board(board)?.power_off()?,
            Action::PowerCut { board } => self.board(board)?.power_cut()?,
            Action::Provision { board } => self.off(board, "provision")?.provision(limit)?,
            Action::MoveCard { from, to } => {
                self.off(to, "insert a card")?;
                let card = self.off(from, "pull the card")?.remove_card()?;
                self.board(to)?.insert_card(card)?;
            }
            Action::CopyCard { from, to } => {
                self.off(to, "insert a card")?;
                let label = format!("{to}-copy-of-{from}");
                let copy = self.with_card(from, "copy its card", |card| card.copy(&label))?;
                facts.detail = Some(format!("copy has card id {}", copy.serial()));
                self.board(to)?.insert_card(copy)?;
            }
            Action::RemoveCard { board, shelf } => {
                let card = self.off(board, "pull the card")?.remove_card()?;
                let name = shelf.clone().unwrap_or_else(|| board.clone());
                if self.shelf.insert(name.clone(), card).is_some() {
                    return Err(StepError::Failed(format!("shelf {name} was not empty")));
                }
            }
            Action::InsertCard { board, shelf } => {
                let name = shelf.as_deref().unwrap_or(board);
                let card = self
                    .shelf
                    .remove(name)
                    .ok_or_else(|| StepError::Failed(format!("no card on shelf {name}")))?;
                self.off(board, "insert a card")?.insert_card(card)?;
            }
            Action::RestoreCard { board, shelf } => {
                let mut image = self
                    .shelf
                    .remove(shelf)
                    .ok_or_else(|| StepError::Failed(format!("no card on shelf {shelf}")))?;
                let result = self.with_card(board, "write an old image onto its card", |card| {
                    card.restore_from(&mut *image)
                });
                self.shelf.insert(shelf.clone(), image);
                result?;
                facts.detail = Some(format!("{board}'s card now holds the image from {shelf}"));
            }
            Action::VendorSignBoot { board } => {
                facts.detail = Some(self.off(board, "sign its card")?.vendor_sign_boot()?)
            }
            Action::EditBootFile {
                board,
                file,
                edit: CardEdit::HarnessFile(name),
            } => {
                let bytes = self.off(board, "edit its card")?.harness_file(name)?;
                self.with_card(board, "edit its card", |card| {
                    card.write_boot_file(file, &bytes)
                })?;
                facts.detail = Some(format!(
                    "{file} replaced by the harness's {name} ({} bytes)",
                    bytes.len()
                ));
            }
            Action::EditBootFile { board, file, edit } => {
                let new = self.with_card(board, "edit its card", |card| {
                    let old = String::from_utf8_lossy(&card.read_boot_file(file)?).into_owned();
                    let new = match edit {
                        CardEdit::Append(text) => {
                            let (first, rest) = old.split_once('\n').unwrap_or((&old, ""));
                            format!("{} {}\n{rest}", first.trim_end(), text.trim_start())
                        }
                        CardEdit::Content(text) => text.clone(),
                        CardEdit::Replace([from, to]) => {
                            if !old.contains(from.as_str()) {
                                return Err(StepError::Failed(format!("{file} has no {from:?}")));
                            }
                            old.replace(from.as_str(), to)
                        }
                        CardEdit::HarnessFile(_) => unreachable!("handled above"),
                    };
                    card.write_boot_file(file, new.as_bytes())?;
                    Ok(new)
                })?;
                facts.detail = Some(format!("{file} now: {}", new.trim_end()));
            }
            Action::ScanCard { board } => {
                let mut secrets = Vec::new();
                for b in self.boards.values_mut() {
                    secrets.extend(b.known_secrets());
                }
                let want_proof = self.want_proof;
                let mut loot = Vec::new();
                if want_proof {
                    for b in self.boards.values_mut() {
                        loot.extend(b.attacker_loot());
                    }
                }
                let (found, proof) = self.with_card(board, "scan its card", |card| {
                    let proof = if want_proof {
                        card.exfiltration_proof(&loot)
                    } else {
                        Ok(None)
                    };
                    Ok((card.scan(&secrets)?, proof))
                })?;
                let proof_text = match &proof {
                    Ok(Some(p)) => format!("; {p}"),
                    _ => String::new(),
                };
                facts.exfiltration = Some(proof);
                facts.detail = Some(format!(
                    "searched for {} known secret(s); found {}{proof_text}",
                    secrets.len(),
                    found.len()
                ));
                facts.scan = Some((found, secrets.len()));
            }
            Action::ZymkeyCutTab { board } => {
                facts.detail = Some(self.board(board)?.zymkey(ZymkeyOp::CutTab)?)
            }
            Action::ZymkeyBreach { board, channel } => {
                facts.detail = Some(self.board(board)?.zymkey(ZymkeyOp::Breach(*channel))?)
            }
            Action::ZymkeyFault { board, fault } => {
                facts.detail = Some(self.board(board)?.zymkey(ZymkeyOp::Fault(fault))?)
            }
            Action::ZymkeyAttach { board } => {
                facts.detail = Some(self.board(board)?.zymkey(ZymkeyOp::Attach)?)
            }
            Action::ZymkeySniff { board } => {
                facts.detail = Some(self.board(board)?.zymkey_sniff()?)
            }
            Action::ZymkeyDetach { board } => {
                facts.detail = Some(self.board(board)?.zymkey(ZymkeyOp::Detach)?)
            }
            Action::ZymkeySpoof { board, like } => {
                let other = self.board(like)?;
                let board_id = other.board_id();
                let card_id = other
                    .card_serial()
                    .ok_or_else(|| StepError::Failed(format!("{like} has no card to forge")))?;
                facts.detail = Some(
                    self.board(board)?
                        .zymkey(ZymkeyOp::Spoof { board_id, card_id })?,
                );
            }
            Action::ZymkeyMove { from, to } => {
                self.off(to, "seat a module")?;
                let module = self.off(from, "take its module")?.take_zymkey()?;
                self.board(to)?.seat_zymkey(module)?;
            }
            Action::TokenPlug { token, board } => facts.detail = Some(self.plug(token, board)?),
            Action::TokenUnplug { token } => {
                let board = self
                    .plugged
                    .remove(token)
                    .ok_or_else(|| StepError::Failed(format!("token {token} is not plugged")))?;
                self.board(&board)?.unplug_token(token)?;
                facts.detail = Some(format!("unplugged from {board}"));
            }
            Action::TokenPresence { token, answer } => {
                facts.detail = Some(self.token(token)?.presence(*answer)?)
            }
            Action::TokenFault {
                token,
                fault,
                count,
            } => facts.detail = Some(self.token(token)?.fault(*fault, *count)?),
            Action::TokenClone { token, into } => {
                if self.plugged.contains_key(into) {
                    return Err(StepError::Failed(format!(
                        "unplug {into} before cloning into it"
                    )));
                }
                let mut copy = self
                    .tokens
                    .remove(into)
                    .ok_or_else(|| StepError::Failed(format!("no token {into}")))?;
                let result = match self.tokens.get(token) {
                    Some(original) => copy.clone_from(&**original),
                    None => Err(StepError::Failed(format!("no token {token}"))),
                };
                self.tokens.insert(into.clone(), copy);
                result?;
                facts.detail = Some(format!("{into} is now a bit-for-bit copy of {token}"));
            }
            Action::ConsoleSend { board, text } => self.board(board)?.console().send(text)?,
            Action::ConsoleExpect { board, pattern } => {
                let from = self.cursors.get(board).copied();
                let b = self.board(board)?;
                let from = from.unwrap_or_else(|| b.console().mark());
                let (line, after) = b.console().expect_guest_after(from, pattern, limit)?;
                self.cursors.insert(board.clone(), after);
                facts.detail = Some(line);
            }
            Action::SshLogin {
                board,
                user,
                answers,
                command,
            } => {
                let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
                let login = self
                    .board(board)?
                    .ssh_login(user, &answers, command, limit, step_dir)?;
                facts.detail = Some(format!(
                    "{}; prompts {:?}",
                    if login.granted { "granted" } else { "denied" },
                    login.prompts
                ));
                facts.stdout = Some(login.stdout.clone());
                facts.login = Some(login);
            }
            Action::ConsoleLogin {
                board,
                user,
                password,
            } => {
                let login = console_login(self.board(board)?.console(), user, password, limit)?;
                facts.detail = Some(format!(
                    "{}; prompts {:?}",
                    if login.granted { "granted" } else { "denied" },
                    login.prompts
                ));
                facts.login = Some(login);
            }
            Action::MaintenanceExec { board, command } => {
                let out = self.board(board)?.maintenance_exec(command, limit)?;
                facts.detail = Some(out.trim_end().to_string());
                facts.stdout = Some(out);
            }
            Action::Wait { duration } => {
                let end = Instant::now() + duration.0;
                while Instant::now() < end && !aborted() {
                    std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
                }
            }
        }
        Ok(facts)
    }
}

/// A person at the serial console: wakes the getty, types the user and password, and watches for
/// a shell prompt or "Login incorrect".
fn console_login(
    console: &board::Console,
    user: &str,
    password: &str,
    limit: Duration,
) -> Result<LoginFacts, StepError> {
    let deadline = Instant::now() + limit;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut prompts = Vec::new();
    let mark = console.mark();
    console.send("\n")?;
    let (_, after_login) = console.expect_guest_after(mark, "login: ?$", left())?;
    prompts.push("login: ".to_string());
    console.send(&format!("{user}\n"))?;
    let (_, after_password) = console.expect_guest_after(after_login, "Password: ?$", left())?;
    prompts.push("Password: ".to_string());
    console.send(&format!("{password}\n"))?;
    let (line, after) = console.expect_guest_after(
        after_password,
        r"Login incorrect|[$#] ?(\x1b\[6n)?$",
        left(),
    )?;
    let granted = !line.contains("Login incorrect");
    let mut stdout = String::new();
    if granted {
        // Typed before the shell prompts (the verdict can be a motd line cut short after its
        // `#`), the output follows the prompt on its line: "$ tech".
        console.send("id -un; exit\n")?;
        if let Ok((l, _)) =
            console.expect_guest_after(after, &format!("(^|[$#] ){user}\\s*$"), left())
        {
            stdout = l.trim_start_matches(['$', '#', ' ']).trim_end().to_string();
        }
    }
    Ok(LoginFacts {
        granted,
        prompts,
        messages: line,
        stdout,
        timed_out: false,
    })
}
