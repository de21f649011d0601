//! The engine against an in-memory fake target: ordering, continue-after-failure, not-run after
//! a failed action, time limits, teardown (also on panic), skips with reasons, parallel runs and
//! the reports.

use std::any::Any;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use board::{Console, Mark};
use scenario::engine::{
    self, BootOutcome, EngineOptions, KillSwitch, LoginFacts, Observer, ScenarioBoard,
    ScenarioCard, ScenarioResult, ScenarioToken, Secret, Silent, StepError, Target, Verdict,
    ZymkeyOp,
};
use scenario::{
    ActionKind, BoardSpec, LoadedScenario, Presence, Scenario, Step, TokenFault, TokenSpec,
};

type Log = Arc<Mutex<Vec<String>>>;

#[derive(Clone, Default)]
struct Script {
    hang_power_off: bool,
    panic_on_ssh: bool,
    no_zymkey: bool,
    no_usb: bool,
    /// The board never answers a login: the client gives up.
    ssh_hangs: bool,
}

struct FakeTarget {
    log: Log,
    script: Script,
}

struct FakeCard {
    serial: String,
    files: BTreeMap<String, Vec<u8>>,
}

impl ScenarioCard for FakeCard {
    fn serial(&self) -> String {
        self.serial.clone()
    }
    fn copy(&mut self, label: &str) -> Result<Box<dyn ScenarioCard>, StepError> {
        Ok(Box::new(FakeCard {
            serial: label.into(),
            files: self.files.clone(),
        }))
    }
    fn read_boot_file(&self, name: &str) -> Result<Vec<u8>, StepError> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| StepError::Failed(format!("no {name}")))
    }
    fn write_boot_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), StepError> {
        self.files.insert(name.into(), bytes.to_vec());
        Ok(())
    }
    fn scan(&self, secrets: &[Secret]) -> Result<Vec<String>, StepError> {
        Ok(secrets
            .iter()
            .filter(|s| {
                self.files
                    .values()
                    .any(|f| f.windows(s.bytes.len()).any(|w| w == s.bytes.as_slice()))
            })
            .map(|s| s.label.clone())
            .collect())
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// A token counting the requests it answers (shared with the board it is plugged into).
struct FakeToken {
    requests: Arc<AtomicU64>,
}

impl ScenarioToken for FakeToken {
    fn presence(&mut self, answer: Presence) -> Result<String, StepError> {
        Ok(format!("{answer:?}"))
    }
    fn fault(&mut self, fault: TokenFault, count: u32) -> Result<String, StepError> {
        Ok(format!("{} x{count}", fault.name()))
    }
    fn clone_from(&mut self, original: &dyn ScenarioToken) -> Result<(), StepError> {
        self.requests.store(original.requests()?, Ordering::SeqCst);
        Ok(())
    }
    fn requests(&self) -> Result<u64, StepError> {
        Ok(self.requests.load(Ordering::SeqCst))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct FakeBoard {
    /// Request counters of the tokens plugged in, by name.
    plugged: BTreeMap<String, Arc<AtomicU64>>,
    name: String,
    console: Console,
    peer: Option<UnixStream>,
    card: Option<Box<dyn ScenarioCard>>,
    killed: Arc<AtomicBool>,
    log: Log,
    script: Script,
}

impl FakeBoard {
    fn log(&self, what: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{what} {}", self.name));
    }
}

impl Drop for FakeBoard {
    fn drop(&mut self) {
        self.log("drop");
    }
}

impl ScenarioBoard for FakeBoard {
    fn name(&self) -> &str {
        &self.name
    }
    fn board_id(&self) -> String {
        format!("id-{}", self.name)
    }
    fn console(&self) -> &Console {
        &self.console
    }
    fn transcript(&self) -> Option<PathBuf> {
        None
    }
    fn power_on(&mut self) -> Result<(), StepError> {
        self.log("power-on");
        let (mut board, harness) = UnixStream::pair().unwrap();
        self.console.attach(harness.try_clone().unwrap(), harness);
        board
            .write_all(b"fake: booting\nkeybound-guest: sshd ready\n")
            .unwrap();
        self.peer = Some(board);
        Ok(())
    }
    fn wait_boot(&mut self, from: Mark, timeout: Duration) -> Result<BootOutcome, StepError> {
        self.console
            .expect_guest_after(from, "sshd ready", timeout)
            .map(|_| BootOutcome::Up)
            .map_err(StepError::from)
    }
    fn power_off(&mut self) -> Result<(), StepError> {
        self.log("power-off");
        if self.script.hang_power_off {
            while !self.killed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Err(StepError::Failed("killed while powering off".into()));
        }
        self.peer = None;
        Ok(())
    }
    fn power_cut(&mut self) -> Result<(), StepError> {
        self.log("power-cut");
        self.peer = None;
        Ok(())
    }
    fn is_powered(&mut self) -> bool {
        self.peer.is_some() && !self.killed.load(Ordering::SeqCst)
    }
    fn remove_card(&mut self) -> Result<Box<dyn ScenarioCard>, StepError> {
        self.card
            .take()
            .ok_or_else(|| StepError::Failed("empty slot".into()))
    }
    fn insert_card(&mut self, card: Box<dyn ScenarioCard>) -> Result<(), StepError> {
        if self.card.is_some() {
            return Err(StepError::Failed("slot full".into()));
        }
        self.card = Some(card);
        Ok(())
    }
    fn card_serial(&self) -> Option<String> {
        self.card.as_ref().map(|c| c.serial())
    }
    fn ssh_login(
        &mut self,
        user: &str,
        answers: &[&str],
        command: &str,
        _: Duration,
        _: &Path,
    ) -> Result<LoginFacts, StepError> {
        self.log("ssh");
        if self.script.panic_on_ssh {
            panic!("fake ssh exploded");
        }
        let granted = answers == ["right"] && !self.script.ssh_hangs;
        if granted {
            // The password is right: the login stack asks the plugged tokens.
            for requests in self.plugged.values() {
                requests.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(LoginFacts {
            granted,
            prompts: vec![format!("({user}@fake) Password: ")],
            messages: if granted {
                String::new()
            } else {
                "Permission denied".into()
            },
            stdout: if granted {
                format!("{command} ran")
            } else {
                String::new()
            },
            timed_out: self.script.ssh_hangs,
        })
    }
    fn maintenance_exec(&mut self, command: &str, _: Duration) -> Result<String, StepError> {
        Ok(format!("ran {command}\n"))
    }
    fn zymkey(&mut self, op: ZymkeyOp<'_>) -> Result<String, StepError> {
        if self.script.no_zymkey {
            return Err(StepError::Unsupported(
                "this fake has no Zymkey control".into(),
            ));
        }
        Ok(format!("{op:?}"))
    }
    fn take_zymkey(&mut self) -> Result<Box<dyn Any + Send>, StepError> {
        Ok(Box::new(()))
    }
    fn seat_zymkey(&mut self, _: Box<dyn Any + Send>) -> Result<(), StepError> {
        Ok(())
    }
    fn provision(&mut self, _: Duration) -> Result<(), StepError> {
        Err(StepError::Unsupported("no provisioning".into()))
    }
    fn plug_token(&mut self, name: &str, token: &dyn ScenarioToken) -> Result<(), StepError> {
        let token = token
            .as_any()
            .downcast_ref::<FakeToken>()
            .ok_or_else(|| StepError::Failed("a foreign token".into()))?;
        self.log(&format!("plug {name} into"));
        self.plugged
            .insert(name.into(), Arc::clone(&token.requests));
        Ok(())
    }
    fn unplug_token(&mut self, name: &str) -> Result<(), StepError> {
        self.log(&format!("unplug {name} from"));
        self.plugged.remove(name);
        Ok(())
    }
    fn enrol_token(
        &mut self,
        name: &str,
        _: &dyn ScenarioToken,
        user: &str,
    ) -> Result<String, StepError> {
        self.log(&format!("enrol {name} for {user} on"));
        Ok(String::new())
    }
    fn known_secrets(&mut self) -> Vec<Secret> {
        vec![Secret {
            label: format!("{}'s secret", self.name),
            bytes: format!("SECRET-OF-{}", self.name).into_bytes(),
        }]
    }
    fn kill_switch(&self) -> KillSwitch {
        let (killed, log, name) = (
            Arc::clone(&self.killed),
            Arc::clone(&self.log),
            self.name.clone(),
        );
        Arc::new(move || {
            killed.store(true, Ordering::SeqCst);
            log.lock().unwrap().push(format!("kill {name}"));
        })
    }
}

impl Target for FakeTarget {
    fn name(&self) -> String {
        "fake".into()
    }
    fn is_emulated(&self) -> bool {
        true
    }
    fn support(&self, _: &Scenario, step: &Step) -> Result<(), String> {
        match step.action.kind() {
            ActionKind::TokenPlug if self.script.no_usb => Err("the fake has no USB port".into()),
            _ => Ok(()),
        }
    }
    fn create_token(
        &self,
        _: &str,
        _: &TokenSpec,
        _: &Path,
    ) -> Result<Box<dyn ScenarioToken>, StepError> {
        Ok(Box::new(FakeToken {
            requests: Arc::default(),
        }))
    }
    fn create_board(
        &self,
        name: &str,
        _: &BoardSpec,
        _: &Path,
    ) -> Result<Box<dyn ScenarioBoard>, StepError> {
        self.log.lock().unwrap().push(format!("create {name}"));
        Ok(Box::new(FakeBoard {
            plugged: BTreeMap::new(),
            name: name.into(),
            console: Console::new(None).unwrap(),
            peer: None,
            card: Some(Box::new(FakeCard {
                serial: format!("card-{name}"),
                files: BTreeMap::from([("cmdline.txt".into(), b"console=ttyAMA0\n".to_vec())]),
            })),
            killed: Arc::new(AtomicBool::new(false)),
            log: Arc::clone(&self.log),
            script: self.script.clone(),
        }))
    }
}

const BOARDS: &str = "title = \"t\"\n[boards.a]\n[boards.b]\n[tokens.key]\n";

fn scenario(steps: &str) -> LoadedScenario {
    let text = format!("{BOARDS}{steps}");
    let scenario =
        scenario::parse(Path::new("test.toml"), &text).unwrap_or_else(|e| panic!("{}", e.short()));
    LoadedScenario {
        path: "test.toml".into(),
        name: "fake/test".into(),
        scenario,
    }
}

fn run_with(script: Script, steps: &str, options: EngineOptions) -> (ScenarioResult, Vec<String>) {
    let log: Log = Arc::default();
    let target: Arc<dyn Target> = Arc::new(FakeTarget {
        log: Arc::clone(&log),
        script,
    });
    let dir = tempfile::tempdir().unwrap();
    let observer: Arc<dyn Observer> = Arc::new(Silent);
    let result = engine::run_scenario(&target, &scenario(steps), dir.path(), &options, &observer);
    let log = log.lock().unwrap().clone();
    (result, log)
}

fn run(script: Script, steps: &str) -> (ScenarioResult, Vec<String>) {
    run_with(script, steps, EngineOptions::default())
}

fn verdicts(r: &ScenarioResult) -> Vec<&'static str> {
    r.steps.iter().map(|s| s.verdict.word()).collect()
}

const BOOT_A: &str = "[[steps]]\ndo = \"boot\"\nboard = \"a\"\nexpect = \"unlocked\"\n";

#[test]
fn steps_run_in_order_and_every_board_is_torn_down() {
    let steps = format!(
        "{BOOT_A}[[steps]]\ndo = \"ssh-login\"\nboard = \"a\"\nuser = \"tech\"\nanswers = [\"right\"]\nexpect = [\"login-granted\", {{ stdout-regex = \"ran$\" }}]\n\
         [[steps]]\ndo = \"power-off\"\nboard = \"a\"\nexpect = \"powered-off\"\n"
    );
    let (r, log) = run(Script::default(), &steps);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    assert_eq!(
        log,
        [
            "create a",
            "create b",
            "power-on a",
            "ssh a",
            "power-off a",
            "drop a",
            "drop b"
        ]
    );
    let starts: Vec<Duration> = r.steps.iter().map(|s| s.started.unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    assert!(
        r.boards
            .iter()
            .any(|b| b.name == "a" && b.milestones.iter().any(|m| m.text.contains("sshd ready")))
    );
}

#[test]
fn a_failed_expectation_does_not_stop_the_scenario() {
    let steps = format!(
        "{BOOT_A}[[steps]]\ndo = \"ssh-login\"\nid = \"wrong\"\nboard = \"a\"\nuser = \"tech\"\nanswers = [\"wrong\"]\nexpect = \"login-granted\"\n\
         [[steps]]\ndo = \"ssh-login\"\nboard = \"a\"\nuser = \"tech\"\nanswers = [\"also-wrong\"]\nexpect = [\"login-denied\", {{ exchanges-identical = \"wrong\" }}]\n"
    );
    let (r, _) = run(Script::default(), &steps);
    assert_eq!(verdicts(&r), ["pass", "FAIL", "pass"]);
    match &r.verdict {
        Verdict::Fail(why) => assert!(why.contains("expected the login is granted"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_action_makes_later_steps_on_that_board_not_run() {
    let steps = format!(
        "{BOOT_A}[[steps]]\ndo = \"console-expect\"\nboard = \"a\"\npattern = \"never printed\"\ntimeout = \"200ms\"\n\
         [[steps]]\ndo = \"ssh-login\"\nboard = \"a\"\nuser = \"tech\"\n\
         [[steps]]\ndo = \"boot\"\nboard = \"b\"\nexpect = \"unlocked\"\n"
    );
    let (r, log) = run(Script::default(), &steps);
    assert_eq!(verdicts(&r), ["pass", "FAIL", "not run", "pass"]);
    assert!(!log.contains(&"ssh a".to_string()));
    assert!(r.failure_message().unwrap().contains("never printed"));
}

#[test]
fn a_step_that_overruns_is_killed_and_the_rest_not_run() {
    let steps = format!(
        "{BOOT_A}[[steps]]\ndo = \"power-off\"\nboard = \"a\"\ntimeout = \"300ms\"\n\
         [[steps]]\ndo = \"boot\"\nboard = \"b\"\n"
    );
    let options = EngineOptions {
        grace: Duration::from_millis(300),
        ..EngineOptions::default()
    };
    let script = Script {
        hang_power_off: true,
        ..Script::default()
    };
    let (r, log) = run_with(script, &steps, options);
    assert_eq!(verdicts(&r), ["pass", "ERROR", "not run"]);
    assert!(
        matches!(&r.verdict, Verdict::Error(w) if w.contains("overran")),
        "{:?}",
        r.verdict
    );
    for expected in ["kill a", "drop a", "drop b"] {
        assert!(
            log.contains(&expected.to_string()),
            "{expected} missing from {log:?}"
        );
    }
}

#[test]
fn a_scenario_that_overruns_its_limit_is_stopped() {
    let steps = "timeout = \"300ms\"\n".to_string();
    let text = format!(
        "title = \"t\"\n{steps}[boards.a]\n[[steps]]\ndo = \"wait\"\nduration = \"60s\"\n[[steps]]\ndo = \"boot\"\nboard = \"a\"\n"
    );
    let loaded = LoadedScenario {
        path: "t.toml".into(),
        name: "t".into(),
        scenario: scenario::parse(Path::new("t.toml"), &text).unwrap(),
    };
    let log: Log = Arc::default();
    let target: Arc<dyn Target> = Arc::new(FakeTarget {
        log: Arc::clone(&log),
        script: Script::default(),
    });
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        grace: Duration::from_millis(300),
        ..EngineOptions::default()
    };
    let observer: Arc<dyn Observer> = Arc::new(Silent);
    let r = engine::run_scenario(&target, &loaded, dir.path(), &options, &observer);
    assert!(
        matches!(&r.verdict, Verdict::Error(w) if w.contains("overran")),
        "{:?}",
        r.verdict
    );
    assert_eq!(verdicts(&r), ["ERROR", "not run"]);
    assert!(
        r.duration < Duration::from_secs(30),
        "the wait was not cut short"
    );
    assert!(log.lock().unwrap().contains(&"drop a".to_string()));
}

#[test]
fn a_panicking_step_is_an_error_and_every_board_is_still_dropped() {
    let steps = format!("{BOOT_A}[[steps]]\ndo = \"ssh-login\"\nboard = \"a\"\nuser = \"tech\"\n");
    let script = Script {
        panic_on_ssh: true,
        ..Script::default()
    };
    let (r, log) = run(script, &steps);
    assert_eq!(verdicts(&r), ["pass", "ERROR"]);
    assert!(
        matches!(&r.verdict, Verdict::Error(w) if w.contains("fake ssh exploded")),
        "{:?}",
        r.verdict
    );
    for expected in ["power-cut a", "drop a", "drop b"] {
        assert!(
            log.contains(&expected.to_string()),
            "{expected} missing from {log:?}"
        );
    }
}

#[test]
fn a_step_the_target_cannot_do_skips_before_anything_boots() {
    let steps = format!("{BOOT_A}[[steps]]\ndo = \"token-plug\"\ntoken = \"key\"\nboard = \"a\"\n");
    let script = Script {
        no_usb: true,
        ..Script::default()
    };
    let (r, log) = run(script, &steps);
    assert!(log.is_empty(), "boards were made: {log:?}");
    assert_eq!(verdicts(&r), ["not run", "skip"]);
    assert!(
        matches!(&r.verdict, Verdict::Skip(w) if w.contains("no USB port")),
        "{:?}",
        r.verdict
    );
}

#[test]
fn a_step_the_board_cannot_do_skips_the_rest_with_the_reason() {
    let text = "title = \"t\"\n[boards.a]\nzymkey = {}\n[[steps]]\ndo = \"zymkey-cut-tab\"\nboard = \"a\"\n[[steps]]\ndo = \"boot\"\nboard = \"a\"\n";
    let loaded = LoadedScenario {
        path: "t.toml".into(),
        name: "t".into(),
        scenario: scenario::parse(Path::new("t.toml"), text).unwrap(),
    };
    let target: Arc<dyn Target> = Arc::new(FakeTarget {
        log: Arc::default(),
        script: Script {
            no_zymkey: true,
            ..Script::default()
        },
    });
    let dir = tempfile::tempdir().unwrap();
    let observer: Arc<dyn Observer> = Arc::new(Silent);
    let r = engine::run_scenario(
        &target,
        &loaded,
        dir.path(),
        &EngineOptions::default(),
        &observer,
    );
    assert_eq!(verdicts(&r), ["skip", "not run"]);
    assert!(
        matches!(&r.verdict, Verdict::Skip(w) if w.contains("no Zymkey control")),
        "{:?}",
        r.verdict
    );
}

#[test]
fn card_scans_find_secrets_written_to_the_card() {
    let steps = "[[steps]]\ndo = \"scan-card\"\nboard = \"a\"\nexpect = \"no-key-material\"\n\
                 [[steps]]\ndo = \"edit-boot-file\"\nboard = \"a\"\nfile = \"cmdline.txt\"\nedit = { append = \"SECRET-OF-b\" }\n\
                 [[steps]]\ndo = \"scan-card\"\nboard = \"a\"\nexpect = \"no-key-material\"\n";
    let (r, _) = run(Script::default(), steps);
    assert_eq!(verdicts(&r), ["pass", "pass", "FAIL"]);
    assert!(r.failure_message().unwrap().contains("b's secret"));
}

#[test]
fn scenarios_run_in_parallel_in_their_own_directories_and_report() {
    let mut list = Vec::new();
    for (i, steps) in [
        BOOT_A.to_string(),
        format!("{BOOT_A}[[steps]]\ndo = \"ssh-login\"\nboard = \"a\"\nuser = \"tech\"\nexpect = \"login-granted\"\n"),
        "[[steps]]\ndo = \"token-plug\"\ntoken = \"key\"\nboard = \"a\"\n".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let mut s = scenario(steps);
        s.name = format!("group/s{i}");
        list.push(s);
    }
    let target: Arc<dyn Target> = Arc::new(FakeTarget {
        log: Arc::default(),
        script: Script {
            no_usb: true,
            ..Script::default()
        },
    });
    let dir = tempfile::tempdir().unwrap();
    let observer: Arc<dyn Observer> = Arc::new(Silent);
    let results = engine::run_all(
        &target,
        &list,
        2,
        dir.path(),
        &EngineOptions::default(),
        &observer,
    );
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["group/s0", "group/s1", "group/s2"]);
    let words: Vec<&str> = results.iter().map(|r| r.verdict.word()).collect();
    assert_eq!(words, ["pass", "FAIL", "skip"]);
    let dirs: std::collections::BTreeSet<_> = results.iter().map(|r| r.work_dir.clone()).collect();
    assert_eq!(dirs.len(), 3);

    let junit = scenario::report::junit("fake", &results);
    assert_eq!(junit.matches("<testcase ").count(), 3);
    assert!(junit.contains("<failure message=\"step 2"), "{junit}");
    assert!(
        junit.contains("keybound-guest: sshd ready"),
        "console tail in the failure: {junit}"
    );
    assert!(junit.contains("<skipped message="));

    let html = scenario::report::html("fake", &results, Duration::from_secs(3), dir.path());
    assert!(html.contains("<svg") && html.contains("group/s1"));
    for remote in ["src=", "<link", "url(", "https://", "<script"] {
        assert!(
            !html.contains(remote),
            "the report fetches something: {remote}"
        );
    }
}

#[test]
fn token_not_asked_sees_the_requests_a_step_makes_and_enrolment_happens_on_first_plug() {
    let text = "title = \"t\"\n[boards.a]\n[tokens.key]\nenrolled-on = [\"a\"]\n[tokens.spare]\n\
        [[steps]]\ndo = \"boot\"\nboard = \"a\"\n\
        [[steps]]\ndo = \"token-plug\"\ntoken = \"key\"\nboard = \"a\"\n\
        [[steps]]\ndo = \"ssh-login\"\nboard = \"a\"\nuser = \"tech\"\nanswers = [\"wrong\"]\nexpect = [\"login-denied\", { token-not-asked = \"key\" }]\n\
        [[steps]]\ndo = \"ssh-login\"\nboard = \"a\"\nuser = \"tech\"\nanswers = [\"right\"]\nexpect = { token-not-asked = \"key\" }\n\
        [[steps]]\ndo = \"token-unplug\"\ntoken = \"key\"\n\
        [[steps]]\ndo = \"token-clone\"\ntoken = \"key\"\ninto = \"spare\"\n\
        [[steps]]\ndo = \"token-plug\"\ntoken = \"spare\"\nboard = \"a\"\n\
        [[steps]]\ndo = \"token-plug\"\ntoken = \"spare\"\nboard = \"a\"\n";
    let loaded = LoadedScenario {
        path: "t.toml".into(),
        name: "t".into(),
        scenario: scenario::parse(Path::new("t.toml"), text)
            .unwrap_or_else(|e| panic!("{}", e.short())),
    };
    let log: Log = Arc::default();
    let target: Arc<dyn Target> = Arc::new(FakeTarget {
        log: Arc::clone(&log),
        script: Script::default(),
    });
    let dir = tempfile::tempdir().unwrap();
    let observer: Arc<dyn Observer> = Arc::new(Silent);
    let r = engine::run_scenario(
        &target,
        &loaded,
        dir.path(),
        &EngineOptions::default(),
        &observer,
    );
    assert_eq!(
        verdicts(&r),
        [
            "pass", "pass", "pass", "FAIL", "pass", "pass", "pass", "FAIL"
        ],
        "{:#?}",
        r.steps
    );
    assert!(
        r.steps[3]
            .verdict
            .reason()
            .unwrap()
            .contains("answered 1 request"),
        "{:?}",
        r.steps[3].verdict
    );
    assert!(
        r.steps[7]
            .verdict
            .reason()
            .unwrap()
            .contains("already plugged"),
        "{:?}",
        r.steps[7].verdict
    );
    let log = log.lock().unwrap().clone();
    // Enrolled once, on the first plug of the token declared enrolled there; never the clone.
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("enrol "))
            .collect::<Vec<_>>(),
        ["enrol key for tech on a"]
    );
}

#[test]
fn a_login_the_board_never_answers_is_not_a_denial() {
    let steps = format!(
        "{BOOT_A}[[steps]]\ndo = \"ssh-login\"\nboard = \"a\"\nuser = \"tech\"\nanswers = [\"wrong\"]\nexpect = \"login-denied\"\n"
    );
    let (r, _) = run(Script::default(), &steps);
    assert_eq!(verdicts(&r), ["pass", "pass"]);
    let hangs = Script {
        ssh_hangs: true,
        ..Script::default()
    };
    let (r, _) = run(hangs, &steps);
    assert_eq!(verdicts(&r), ["pass", "FAIL"]);
    assert!(
        r.failure_message().unwrap().contains("gave up"),
        "{:?}",
        r.failure_message()
    );
}
