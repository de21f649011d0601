//! A virtual-fido token on a raw CTAPHID socket, and helpers to enrol and authenticate through
//! the real libfido2 client code (custom I/O).
#![allow(dead_code, unreachable_pub)]

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pam_keybound::auth::{ConvError, Conversation};
use pam_keybound::authfile::{CoseType, UserEntry, format_line};
use pam_keybound::enroll::{EnrollRequest, Enrolled, enroll};
use pam_keybound::fido::DeviceSource;
use pam_keybound::log::{Level, Logger};
use pam_keybound::options::Options;
use pam_keybound::{AuthOutcome, Authenticator};
use virtual_fido::ctaphid::EngineConfig;
use virtual_fido::transport::raw_socket::RawSocketServer;
use virtual_fido::{PresencePolicy, Token, TokenConfig};
use zeroize::Zeroizing;

pub const ORIGIN: &str = "pam://keybound-test";

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub token: Arc<Token>,
    pub socket: PathBuf,
}

impl Lab {
    pub fn new() -> Self {
        Self::with_presence_timeout(Duration::from_secs(30))
    }

    pub fn with_presence_timeout(presence_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = Token::in_memory(TokenConfig {
            presence: PresencePolicy::Accept,
            presence_timeout,
            ..TokenConfig::default()
        });
        let socket = dir.path().join("token.sock");
        RawSocketServer::bind(&socket, Arc::clone(&token), EngineConfig::default())
            .unwrap()
            .spawn();
        Self { dir, token, socket }
    }

    /// A second token on its own socket (for clones).
    pub fn second_token(&self) -> (Arc<Token>, PathBuf) {
        let token = Token::in_memory(TokenConfig::default());
        let socket = self.dir.path().join("token2.sock");
        RawSocketServer::bind(&socket, Arc::clone(&token), EngineConfig::default())
            .unwrap()
            .spawn();
        (token, socket)
    }

    pub fn source(&self) -> DeviceSource {
        DeviceSource::RawSockets(vec![self.socket.clone()])
    }

    pub fn device(&self) -> pam_keybound::fido::Device {
        let path = CString::new(self.socket.to_str().unwrap()).unwrap();
        self.source()
            .open(&path, Some(Duration::from_secs(10)))
            .unwrap()
    }

    pub fn enroll(&self, user: &str, cose_type: CoseType, resident: bool) -> Enrolled {
        self.enroll_with(user, cose_type, resident, false, None)
    }

    pub fn enroll_with(
        &self,
        user: &str,
        cose_type: CoseType,
        resident: bool,
        pin_option: bool,
        pin: Option<&str>,
    ) -> Enrolled {
        let pin = pin.map(|p| CString::new(p).unwrap());
        enroll(
            &mut self.device(),
            &EnrollRequest {
                user: user.into(),
                origin: ORIGIN.into(),
                appid: None,
                resident,
                cose_type,
                pin: pin_option,
                verification: false,
                no_presence: false,
            },
            pin.as_deref(),
        )
        .unwrap()
    }

    pub fn authfile(&self) -> PathBuf {
        self.dir.path().join("u2f_keys")
    }

    pub fn write_authfile(&self, entries: &[UserEntry]) {
        let text: String = entries.iter().map(|e| format_line(e) + "\n").collect();
        let p = self.authfile();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state/counters")
    }

    pub fn options(&self, extra: &[&str]) -> Options {
        let mut args = vec![
            format!("authfile={}", self.authfile().display()),
            format!("origin={ORIGIN}"),
            format!("state={}", self.state().display()),
            "timeout=10".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Options::parse(&args, |_| Ok(None)).unwrap()
    }

    pub fn run(
        &self,
        user: &str,
        extra: &[&str],
        source: DeviceSource,
    ) -> (AuthOutcome, Recorder, Vec<(Level, String)>) {
        let (log, mem) = Logger::memory();
        let flow = Authenticator::new(self.options(extra), source, log);
        let mut conv = Recorder::default();
        let out = flow.authenticate(user, &mut conv);
        let logs = mem.lock().unwrap().clone();
        (out, conv, logs)
    }
}

/// A conversation that records every call.
#[derive(Default, Debug, Clone)]
pub struct Recorder {
    pub calls: Vec<String>,
    pub pin: Option<String>,
    pub abort: bool,
}

impl Conversation for Recorder {
    fn info(&mut self, msg: &str) -> Result<(), ConvError> {
        self.calls.push(format!("info:{msg}"));
        if self.abort { Err(ConvError) } else { Ok(()) }
    }
    fn error(&mut self, msg: &str) -> Result<(), ConvError> {
        self.calls.push(format!("error:{msg}"));
        Ok(())
    }
    fn secret(&mut self, prompt: &str) -> Result<Zeroizing<String>, ConvError> {
        self.calls.push(format!("secret:{prompt}"));
        match (&self.pin, self.abort) {
            (Some(p), false) => Ok(Zeroizing::new(p.clone())),
            _ => Err(ConvError),
        }
    }
}

pub fn entry(user: &str, e: &Enrolled) -> UserEntry {
    UserEntry {
        user: user.into(),
        credentials: vec![e.credential.clone()],
    }
}

pub fn missing_socket(dir: &Path) -> DeviceSource {
    DeviceSource::RawSockets(vec![dir.join("no-token.sock")])
}

pub fn shared<T>(v: T) -> Arc<Mutex<T>> {
    Arc::new(Mutex::new(v))
}
