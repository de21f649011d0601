//! One booted QEMU test board running the shipped login stack, with virtual-fido tokens for the
//! guest login tests: the enrolled TEST-ONLY token (fixtures/test-keys), others made on demand,
//! plugged and pulled over usb-redir, and the host's OpenSSH client logging in as a person would.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use board::Board;
use board::ssh::{Login, LoginOutcome, login};
use board_kit::{TEST_PASSWORD, TEST_USER, wait_for_hidraw};
use qemu_runner::{QemuBoard, VirtualToken};
use serde_json::{Value, json};

/// A wrong password.
pub const WRONG_PASSWORD: &str = "not-the-password";
/// Generous: TCG on a loaded two-core machine makes sshd, pam_unix and the token slow, and the
/// module's own bound on a token wait is `timeout=15`.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(150);
/// The module's syslog line for a counter that did not increase.
pub const CLONE_LOG: &str = "POSSIBLE CLONED TOKEN";

/// A booted board and its tokens.
pub struct Guest {
    /// The board (powered, guest up).
    pub board: QemuBoard,
    /// Work files: tokens' state, ssh sessions, the console transcript.
    pub dir: tempfile::TempDir,
    sockets: tempfile::TempDir,
    logins: usize,
    tokens: usize,
    /// A private copy of the `virtual-fido` daemon (other builds relink target/debug's).
    virtual_fido: PathBuf,
}

/// A virtual-fido daemon and the USB id it is plugged as.
pub struct Tok {
    /// The daemon.
    pub token: VirtualToken,
    /// Its USB id on the board.
    pub id: String,
}

impl Tok {
    /// One control request.
    pub fn control(&self, request: Value) -> Value {
        self.token.control(request).expect("token control request")
    }

    /// CTAP2/U2F requests the token has handled since it started.
    pub fn requests(&self) -> u64 {
        self.control(json!({"cmd": "status"}))["requests"]
            .as_u64()
            .expect("status.requests")
    }

    /// Its status object.
    pub fn status(&self) -> Value {
        self.control(json!({"cmd": "status"}))
    }

    /// Sets the presence policy (`accept`, `deny`, `timeout`, `wait-for-touch`).
    pub fn presence(&self, policy: &str) {
        self.control(json!({"cmd": "presence", "policy": policy}));
    }

    /// Arms a one-shot fault (`corrupt`, `oversize`, `stall`, `drop`).
    pub fn fault(&self, fault: &str) {
        self.control(json!({"cmd": "fault", "fault": fault}));
    }

    /// Makes this token a clone of `other` (same credentials, same counter).
    pub fn clone_from(&self, other: &Tok) {
        let state = other.control(json!({"cmd": "export-state"}));
        self.control(json!({"cmd": "import-state", "state": state}));
    }
}

/// What a client can see of a login, with what varies between any two connections (ports,
/// byte counts, durations) normalised away: equal exchanges mean no oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// ssh's exit status.
    pub exit_code: Option<i32>,
    /// Every prompt, in order.
    pub prompts: Vec<String>,
    /// What ssh printed.
    pub messages: String,
    /// The `-vvv` exchange, normalised.
    pub verbose: Vec<String>,
}

/// Normalises one `ssh -vvv` line: the session's private directory (`…/ssh-NN-tag/`), the
/// client's port, durations, byte counts and rates.
fn normalise(line: &str) -> String {
    let line = match line.find("/ssh-") {
        Some(start) => match line[start + 1..].find('/') {
            Some(len) => format!("{}/<session>{}", &line[..start], &line[start + 1 + len..]),
            None => line.to_owned(),
        },
        None => line.to_owned(),
    };
    let line = line.as_str();
    let mut words: Vec<String> = Vec::new();
    let mut previous = "";
    for word in line.split(' ') {
        let numeric = |w: &str| {
            !w.is_empty()
                && w.trim_end_matches([',', '.', ':', ')'])
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.')
        };
        let keep = match previous {
            // "port 38211", "local port", "sent 2360, received 3292 bytes, in 0.8 seconds"
            "port" | "sent" | "received" | "in" => !numeric(word),
            _ => !(numeric(word) && line.contains("Bytes per second")),
        };
        words.push(if keep {
            word.to_owned()
        } else {
            "#".to_owned()
        });
        previous = word;
    }
    words.join(" ")
}

impl Exchange {
    /// The exchange of `outcome`.
    pub fn of(outcome: &LoginOutcome) -> Self {
        Self {
            exit_code: outcome.exit_code,
            prompts: outcome.prompts.clone(),
            messages: outcome.messages.clone(),
            verbose: outcome.verbose.lines().map(normalise).collect(),
        }
    }

    /// The first differing line of two exchanges, for failure messages.
    pub fn first_difference(&self, other: &Exchange) -> String {
        if self.exit_code != other.exit_code
            || self.prompts != other.prompts
            || self.messages != other.messages
        {
            return format!(
                "exit {:?} vs {:?}, prompts {:?} vs {:?}, messages {:?} vs {:?}",
                self.exit_code,
                other.exit_code,
                self.prompts,
                other.prompts,
                self.messages,
                other.messages
            );
        }
        let (a, b) = (&self.verbose, &other.verbose);
        for i in 0..a.len().max(b.len()) {
            if a.get(i) != b.get(i) {
                return format!("-vvv line {}: {:?} vs {:?}", i + 1, a.get(i), b.get(i));
            }
        }
        "none".into()
    }
}

impl Guest {
    /// Boots a fresh board named `name` on the test image and waits for sshd.
    pub fn boot(name: &str) -> Self {
        let image = board_kit::test_image();
        let dir = tempfile::tempdir().unwrap();
        let sockets = tempfile::Builder::new().prefix("pl-").tempdir().unwrap();
        let virtual_fido = dir.path().join("virtual-fido");
        let built = qemu_runner::host_tool("virtual-fido").expect("the virtual-fido daemon");
        std::fs::copy(&built, &virtual_fido).expect("copying virtual-fido");
        let mut board = board_kit::board(&image, name, dir.path());
        board_kit::boot(&mut board);
        Self {
            board,
            dir,
            sockets,
            logins: 0,
            tokens: 0,
            virtual_fido,
        }
    }

    fn next_token_dirs(&mut self) -> (String, PathBuf, PathBuf) {
        self.tokens += 1;
        let n = self.tokens;
        (
            format!("token{n}"),
            self.dir.path().join(format!("tok{n}")),
            self.sockets.path().join(n.to_string()),
        )
    }

    /// A copy of the enrolled test token (not plugged yet), presence `accept`.
    pub fn enrolled_token(&mut self) -> Tok {
        let (id, dir, sockets) = self.next_token_dirs();
        let state = dir.join("token");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::copy(
            board_kit::test_token_state(&board_kit::repo()),
            state.join("token.json"),
        )
        .expect("copying the enrolled test token's state");
        let token = VirtualToken::start_program(&self.virtual_fido, &state, &sockets, "accept")
            .expect("starting the enrolled test token");
        Tok { token, id }
    }

    /// A fresh token with no credential for the guest (not plugged yet).
    pub fn blank_token(&mut self) -> Tok {
        let (id, dir, sockets) = self.next_token_dirs();
        std::fs::create_dir_all(&dir).unwrap();
        let token =
            VirtualToken::start_program(&self.virtual_fido, &dir.join("token"), &sockets, "accept")
                .expect("starting a blank token");
        Tok { token, id }
    }

    /// Plugs `tok` and waits for the guest's hidraw node (one token at a time).
    pub fn plug(&mut self, tok: &Tok) {
        self.board
            .plug_usb_redir(&tok.id, tok.token.usbredir_socket())
            .expect("plugging the token");
        wait_for_hidraw(&self.board, true);
    }

    /// Pulls `tok` out and waits until the guest has no hidraw node.
    pub fn unplug(&mut self, tok: &Tok) {
        self.board
            .unplug_usb(&tok.id)
            .expect("unplugging the token");
        wait_for_hidraw(&self.board, false);
    }

    /// A fresh private directory for one ssh session.
    pub fn session_dir(&mut self, tag: &str) -> PathBuf {
        self.logins += 1;
        self.dir
            .path()
            .join(format!("ssh-{:02}-{tag}", self.logins))
    }

    /// Logs in over the production sshd as [`TEST_USER`] with `password`, running `id -un`.
    pub fn ssh(&mut self, tag: &str, password: &str) -> LoginOutcome {
        let workdir = self.session_dir(tag);
        ssh_login(&self.board, password, &workdir)
    }

    /// Forgets pam_faillock's failure record (so earlier denials do not lock the account).
    pub fn reset_faillock(&self) {
        self.board
            .maintenance_exec(&format!("faillock --user {TEST_USER} --reset"))
            .expect("resetting faillock");
    }

    /// The guest's syslog (busybox syslogd, `/var/log/messages`).
    pub fn syslog(&self) -> String {
        self.board
            .maintenance_exec("cat /var/log/messages")
            .expect("reading the guest's syslog")
    }

    /// The production sshd's listener: its pid (from `/run/sshd.pid`) while port 22 listens.
    pub fn sshd_listener(&self) -> Option<String> {
        self.board
            .maintenance_exec("grep -q ':0016 00000000:0000 0A' /proc/net/tcp && cat /run/sshd.pid")
            .ok()
            .map(|pid| pid.trim().to_owned())
            .filter(|pid| !pid.is_empty())
    }
}

/// A login on `board`'s production sshd (usable from another thread: only the endpoint is used).
pub fn ssh_login(board: &QemuBoard, password: &str, workdir: &Path) -> LoginOutcome {
    let endpoint = board.ssh().expect("the board is powered");
    login(
        &endpoint,
        &Login {
            user: TEST_USER,
            answers: &[password],
            command: "id -un",
            timeout: LOGIN_TIMEOUT,
        },
        workdir,
    )
    .expect("running ssh")
}

/// The right password.
pub fn right() -> &'static str {
    TEST_PASSWORD
}

/// Asserts a granted login that ran the command as the user.
#[track_caller]
pub fn assert_granted(case: &str, outcome: &LoginOutcome) {
    assert!(
        outcome.granted && outcome.stdout.trim() == TEST_USER,
        "{case}: expected a shell, got {outcome:#?}"
    );
}

/// Asserts a denied login (ssh's authentication failure, not a time-out).
#[track_caller]
pub fn assert_denied(case: &str, outcome: &LoginOutcome) {
    assert!(
        !outcome.granted && !outcome.timed_out && outcome.exit_code == Some(255),
        "{case}: expected a denial, got {outcome:#?}"
    );
    assert!(
        outcome.verbose.contains("Permission denied"),
        "{case}: ssh did not report the denial: {}",
        outcome.verbose
    );
}

/// Seconds since `start`, for the figures.
pub fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
