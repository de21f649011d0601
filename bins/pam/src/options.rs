//! Module options: pam_u2f's names and meanings, plus `timeout=` and `state=`.
//!
//! Sources, in order: the `conf=` file (default [`DEFAULT_CONF`] if it exists), then the module
//! arguments (the last occurrence of an option wins). An unknown option, a bad value, or a refused
//! pam_u2f option makes authentication fail — never a silent skip.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration file read when `conf=` is not given (only if it exists).
pub const DEFAULT_CONF: &str = "/etc/security/pam_keybound.conf";
/// Where signature counters live unless `state=` says otherwise.
pub const DEFAULT_STATE: &str = "/var/lib/keybound/counters";
/// pam_u2f's default authfile, relative to the user's home.
pub const DEFAULT_AUTHFILE: &str = ".config/Yubico/u2f_keys";
/// The cue shown after a token holding a credential was found.
pub const DEFAULT_CUE_PROMPT: &str = "Please touch the device.";
/// Default wait for the token, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 15;

/// Where `debug` output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugSink {
    /// syslog (LOG_AUTHPRIV | LOG_DEBUG), the default.
    Syslog,
    /// Standard error.
    Stderr,
    /// Standard output.
    Stdout,
    /// Appended to a regular file (never through a symlink).
    File(PathBuf),
}

/// A pam_u2f tri-state: `-1` (the credential decides), `0`, `1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requirement {
    /// Take the credential's own option (`+presence`, `+verification`, `+pin`).
    #[default]
    FromCredential,
    /// Never required.
    Off,
    /// Always required.
    On,
}

impl Requirement {
    /// Resolves against the credential's flag.
    pub fn resolve(self, credential_flag: bool) -> bool {
        match self {
            Requirement::FromCredential => credential_flag,
            Requirement::Off => false,
            Requirement::On => true,
        }
    }
}

/// Parsed module options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `authfile=`: absolute, or relative to the user's home.
    pub authfile: Option<String>,
    /// `expand`: `%u` → user name, `%h` → home in `authfile`.
    pub expand: bool,
    /// `nouserok`: a user without credentials → PAM_IGNORE (never for an unreadable authfile).
    pub nouserok: bool,
    /// `cue`: tell the user to touch the token (only once a token holding a credential is found).
    pub cue: bool,
    /// `cue_prompt=`.
    pub cue_prompt: String,
    /// `origin=` (default `pam://$HOSTNAME`): the relying party of new-format credentials.
    pub origin: Option<String>,
    /// `appid=` (default: the origin): the relying party of old-format credentials.
    pub appid: Option<String>,
    /// `max_devices=` (default 24).
    pub max_devices: usize,
    /// `userpresence=`.
    pub userpresence: Requirement,
    /// `userverification=`.
    pub userverification: Requirement,
    /// `pinverification=`.
    pub pinverification: Requirement,
    /// `debug`.
    pub debug: bool,
    /// `debug_file=`.
    pub debug_file: DebugSink,
    /// `timeout=` seconds (1..=300) on every wait for the token.
    pub timeout: Duration,
    /// `state=`: the signature-counter file.
    pub state: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            authfile: None,
            expand: false,
            nouserok: false,
            cue: false,
            cue_prompt: DEFAULT_CUE_PROMPT.to_owned(),
            origin: None,
            appid: None,
            max_devices: 24,
            userpresence: Requirement::default(),
            userverification: Requirement::default(),
            pinverification: Requirement::default(),
            debug: false,
            debug_file: DebugSink::Syslog,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            state: PathBuf::from(DEFAULT_STATE),
        }
    }
}

/// Why the options were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Not an option of this module or pam_u2f.
    #[error("unknown option `{0}`")]
    Unknown(String),
    /// A pam_u2f option this module refuses on purpose.
    #[error("option `{name}` refused: {reason}")]
    Refused {
        /// The option.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A flag given a value, or an option missing its value.
    #[error("option `{0}`: value missing or not expected")]
    Shape(String),
    /// A value out of range or malformed.
    #[error("option `{name}`: bad value `{value}`")]
    BadValue {
        /// The option.
        name: String,
        /// The value given.
        value: String,
    },
    /// The `conf=` file could not be used.
    #[error("configuration file: {0}")]
    Conf(String),
}

fn refused(name: &str) -> Option<&'static str> {
    Some(match name {
        "interactive" | "prompt" => {
            "it prompts before a token is found, telling a caller the password was right"
        }
        "manual" => "it prompts before a token is found and has no timeout",
        "alwaysok" => "it turns failures into success",
        "nodetect" => "it skips the silent probe that keeps the cue and PIN prompt token-bound",
        "openasuser" => "not supported: authfiles are read as root with ownership checks",
        "authpending_file" => "not supported",
        "sshformat" => "not supported: SSH-format credentials",
        _ => return None,
    })
}

fn tri(name: &str, value: &str) -> Result<Requirement, OptionError> {
    match value {
        "-1" => Ok(Requirement::FromCredential),
        "0" => Ok(Requirement::Off),
        "1" => Ok(Requirement::On),
        _ => Err(OptionError::BadValue {
            name: name.into(),
            value: value.into(),
        }),
    }
}

fn nonempty(name: &str, value: &str) -> Result<String, OptionError> {
    if value.is_empty() || value.contains('\0') {
        return Err(OptionError::BadValue {
            name: name.into(),
            value: value.into(),
        });
    }
    Ok(value.to_owned())
}

impl Options {
    /// Applies one argument (`name` or `name=value`).
    pub fn apply(&mut self, arg: &str) -> Result<(), OptionError> {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        if let Some(reason) = refused(name) {
            return Err(OptionError::Refused {
                name: name.into(),
                reason,
            });
        }
        let bad = || OptionError::BadValue {
            name: name.into(),
            value: value.unwrap_or_default().into(),
        };
        match (name, value) {
            ("expand", None) => self.expand = true,
            ("nouserok", None) => self.nouserok = true,
            ("cue", None) => self.cue = true,
            ("debug", None) => self.debug = true,
            ("authfile", Some(v)) => self.authfile = Some(nonempty(name, v)?),
            ("cue_prompt", Some(v)) => self.cue_prompt = nonempty(name, v)?,
            ("origin", Some(v)) => self.origin = Some(nonempty(name, v)?),
            ("appid", Some(v)) => self.appid = Some(nonempty(name, v)?),
            ("max_devices", Some(v)) => {
                self.max_devices = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(bad)?;
            }
            ("userpresence", Some(v)) => self.userpresence = tri(name, v)?,
            ("userverification", Some(v)) => self.userverification = tri(name, v)?,
            ("pinverification", Some(v)) => self.pinverification = tri(name, v)?,
            ("debug_file", Some(v)) => {
                self.debug_file = match v {
                    "syslog" => DebugSink::Syslog,
                    "stderr" => DebugSink::Stderr,
                    "stdout" => DebugSink::Stdout,
                    p if p.starts_with('/') => DebugSink::File(PathBuf::from(p)),
                    _ => return Err(bad()),
                }
            }
            ("timeout", Some(v)) => {
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=300).contains(n))
                    .ok_or_else(bad)?;
                self.timeout = Duration::from_secs(secs);
            }
            ("state", Some(v)) if v.starts_with('/') => self.state = PathBuf::from(v),
            ("state", Some(_)) => return Err(bad()),
            (
                "expand" | "nouserok" | "cue" | "debug" | "authfile" | "cue_prompt" | "origin"
                | "appid" | "max_devices" | "userpresence" | "userverification" | "pinverification"
                | "debug_file" | "timeout" | "state" | "conf",
                _,
            ) => return Err(OptionError::Shape(name.into())),
            _ => return Err(OptionError::Unknown(name.into())),
        }
        Ok(())
    }

    /// Parses module arguments, reading the `conf=` file (or [`DEFAULT_CONF`] if present) first.
    /// `read_conf` returns the file's text, `Ok(None)` if it does not exist (only allowed for
    /// the default), or an error message (unsafe or unreadable file).
    pub fn parse<S: AsRef<str>>(
        args: &[S],
        read_conf: impl Fn(&Path) -> Result<Option<String>, String>,
    ) -> Result<Self, OptionError> {
        let mut conf: Option<PathBuf> = None;
        for a in args {
            if let Some(v) = a.as_ref().strip_prefix("conf=") {
                if !v.starts_with('/') {
                    return Err(OptionError::BadValue {
                        name: "conf".into(),
                        value: v.into(),
                    });
                }
                conf = Some(PathBuf::from(v));
            } else if a.as_ref() == "conf" {
                return Err(OptionError::Shape("conf".into()));
            }
        }
        let mut opts = Options::default();
        let (path, must_exist) = match &conf {
            Some(p) => (p.as_path(), true),
            None => (Path::new(DEFAULT_CONF), false),
        };
        match read_conf(path).map_err(OptionError::Conf)? {
            Some(text) => {
                for line in text.lines() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    if line.starts_with("conf") {
                        return Err(OptionError::Conf(format!(
                            "{}: `conf` inside a configuration file",
                            path.display()
                        )));
                    }
                    opts.apply(line)?;
                }
            }
            None if must_exist => {
                return Err(OptionError::Conf(format!(
                    "{}: does not exist",
                    path.display()
                )));
            }
            None => {}
        }
        for a in args {
            if !a.as_ref().starts_with("conf=") {
                opts.apply(a.as_ref())?;
            }
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests;
