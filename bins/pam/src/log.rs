//! Logging: syslog with facility LOG_AUTHPRIV (errors, refusals, possible clones), plus the
//! `debug` messages to the `debug_file=` sink. Messages never contain key material; control
//! characters from untrusted strings (user names, paths) are replaced.

use std::ffi::CString;
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::options::DebugSink;

/// Severity of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A failure of configuration or the system.
    Error,
    /// A security event (possible clone, refused option).
    Warning,
    /// Successful authentication and similar.
    Info,
    /// `debug` only.
    Debug,
}

/// Messages kept in memory by [`Logger::memory`].
pub type Captured = Arc<Mutex<Vec<(Level, String)>>>;

/// Where messages go.
#[derive(Debug, Clone)]
pub struct Logger {
    debug: Option<DebugSink>,
    memory: Option<Captured>,
}

fn clean(msg: &str) -> String {
    msg.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Logger {
    /// syslog, with debug messages to `debug` when given.
    pub fn syslog(debug: Option<DebugSink>) -> Self {
        Self {
            debug,
            memory: None,
        }
    }

    /// A logger that keeps messages in memory (tests), debug included.
    pub fn memory() -> (Self, Captured) {
        let mem = Arc::new(Mutex::new(Vec::new()));
        (
            Self {
                debug: Some(DebugSink::Syslog),
                memory: Some(Arc::clone(&mem)),
            },
            mem,
        )
    }

    /// Logs `msg` at `level`.
    pub fn log(&self, level: Level, msg: &str) {
        let msg = clean(msg);
        if let Some(mem) = &self.memory {
            mem.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((level, msg));
            return;
        }
        let sink = match level {
            Level::Debug => match &self.debug {
                None => return,
                Some(s) => s,
            },
            _ => &DebugSink::Syslog,
        };
        let line = format!("pam_keybound: {msg}");
        match sink {
            DebugSink::Syslog => {
                let prio = match level {
                    Level::Error => libc::LOG_ERR,
                    Level::Warning => libc::LOG_WARNING,
                    Level::Info => libc::LOG_INFO,
                    Level::Debug => libc::LOG_DEBUG,
                };
                if let Ok(c) = CString::new(line) {
                    // SAFETY: the format is a literal "%s" and `c` is a valid C string.
                    unsafe { libc::syslog(libc::LOG_AUTHPRIV | prio, c"%s".as_ptr(), c.as_ptr()) };
                }
            }
            DebugSink::Stderr => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            DebugSink::Stdout => {
                let _ = writeln!(std::io::stdout(), "{line}");
            }
            DebugSink::File(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                    .open(path)
                    && f.metadata().is_ok_and(|m| m.is_file())
                {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
    }

    /// An error.
    pub fn error(&self, msg: &str) {
        self.log(Level::Error, msg);
    }

    /// A security warning.
    pub fn warning(&self, msg: &str) {
        self.log(Level::Warning, msg);
    }

    /// Information.
    pub fn info(&self, msg: &str) {
        self.log(Level::Info, msg);
    }

    /// A debug message (only with `debug`).
    pub fn debug(&self, msg: &str) {
        self.log(Level::Debug, msg);
    }
}
