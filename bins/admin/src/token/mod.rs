//! `keybound token …`: enrol, list and remove FIDO2 token credentials in the pam_u2f authfile that
//! pam_keybound reads (like pamu2fcfg, plus atomic edits and the clone-detection counter record).

mod edit;
mod pin;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use pam_keybound::authfile::CoseType;
use pam_keybound::counters::{CounterStore, CredentialKey, write_atomically};
use pam_keybound::enroll::{EnrollError, EnrollRequest, enroll};
use pam_keybound::fido::DeviceSource;
use pam_keybound::safe_file::{self, SafeFileError};

/// The authfile of the shipped login stack.
pub(crate) const DEFAULT_AUTHFILE: &str = "/etc/keybound/u2f_keys";
/// The origin of the shipped login stack (pamu2fcfg's default would be `pam://$HOSTNAME`).
pub(crate) const DEFAULT_ORIGIN: &str = "pam://keybound";
/// libfido2's "PIN required".
const FIDO_ERR_PIN_REQUIRED: i32 = 0x36;

/// Key type.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyType {
    /// ECDSA P-256.
    Es256,
    /// Ed25519.
    Eddsa,
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a credential on the first FIDO device and add it to the user's authfile line.
    Enroll {
        /// The user who will log in with this token.
        #[arg(long)]
        user: String,
        /// Relying party id (must match the PAM module's `origin=`).
        #[arg(long, default_value = DEFAULT_ORIGIN)]
        origin: String,
        /// Relying party name / U2F appid (default: the origin).
        #[arg(long)]
        appid: Option<String>,
        /// Make a resident (discoverable) credential; stored as `*`.
        #[arg(long)]
        resident: bool,
        /// Key type.
        #[arg(long = "type", value_enum, default_value = "es256")]
        key_type: KeyType,
        /// Require the token PIN at every login (`+pin`).
        #[arg(long)]
        pin: bool,
        /// Require user verification at every login (`+verification`).
        #[arg(long)]
        verification: bool,
        /// Do not require a touch at login (drops `+presence`).
        #[arg(long)]
        no_presence: bool,
        #[command(flatten)]
        files: Files,
        /// How long to wait for the touch, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Test only: a virtual-fido raw CTAPHID socket instead of /dev/hidraw*.
        #[arg(long, hide = true)]
        raw_socket: Option<PathBuf>,
    },
    /// List enrolled credentials (id, type, options, recorded counter).
    List {
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        files: Files,
    },
    /// Remove one credential (by the id `list` shows, or a prefix of it) or all of a user's.
    Remove {
        /// The user.
        #[arg(long)]
        user: String,
        /// The credential id (default: all of the user's credentials).
        #[arg(long)]
        credential: Option<String>,
        #[command(flatten)]
        files: Files,
    },
}

/// The files the PAM module reads.
#[derive(Debug, clap::Args)]
pub(crate) struct Files {
    /// The authfile (the PAM module's `authfile=`).
    #[arg(long, default_value = DEFAULT_AUTHFILE)]
    authfile: PathBuf,
    /// The signature-counter file (the PAM module's `state=`).
    #[arg(long, default_value = pam_keybound::options::DEFAULT_STATE)]
    state: PathBuf,
}

/// Runs a token subcommand.
pub(crate) fn run(cmd: TokenCommand) -> ExitCode {
    let result = match cmd {
        TokenCommand::Enroll {
            user,
            origin,
            appid,
            resident,
            key_type,
            pin,
            verification,
            no_presence,
            files,
            timeout,
            raw_socket,
        } => {
            let req = EnrollRequest {
                user,
                origin,
                appid,
                resident,
                cose_type: match key_type {
                    KeyType::Es256 => CoseType::Es256,
                    KeyType::Eddsa => CoseType::EdDsa,
                },
                pin,
                verification,
                no_presence,
            };
            let source = match raw_socket {
                Some(p) => DeviceSource::RawSockets(vec![p]),
                None => DeviceSource::Hid,
            };
            run_enroll(&req, &files, &source, Duration::from_secs(timeout.max(1)))
        }
        TokenCommand::List { user, files } => run_list(user.as_deref(), &files),
        TokenCommand::Remove {
            user,
            credential,
            files,
        } => run_remove(&user, credential.as_deref(), &files),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keybound token: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_authfile(path: &Path) -> Result<String, String> {
    match safe_file::read_text(
        path,
        &[0, safe_file::euid()],
        pam_keybound::auth::MAX_AUTHFILE,
    ) {
        Ok(t) => Ok(t),
        Err(SafeFileError::NotFound(_)) => Ok(String::new()),
        Err(e) => Err(format!("authfile refused: {e}")),
    }
}

fn write_authfile(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_atomically(path, text.as_bytes(), 0o600).map_err(|e| format!("{}: {e}", path.display()))
}

fn run_enroll(
    req: &EnrollRequest,
    files: &Files,
    source: &DeviceSource,
    timeout: Duration,
) -> Result<(), String> {
    if req.user.is_empty() || req.user.contains([':', '\n', '\r']) {
        return Err("the user name must be non-empty without `:` or newlines".into());
    }
    // Read (and check) the authfile first: never touch a token for an unusable file.
    let before = read_authfile(&files.authfile)?;
    let path = source
        .paths(1)
        .map_err(|e| format!("device discovery failed: {e}"))?
        .into_iter()
        .next()
        .ok_or("no FIDO device found")?;
    let mut dev = source
        .open(&path, Some(timeout))
        .map_err(|e| format!("{}: {e}", path.to_string_lossy()))?;
    let mut pin: Option<CString> = None;
    if req.pin {
        pin = Some(read_pin_cstring()?);
    }
    eprintln!("Touch the token to create the credential for {}…", req.user);
    let enrolled = match enroll(&mut dev, req, pin.as_deref()) {
        Err(EnrollError::Device(e)) if e.0 == FIDO_ERR_PIN_REQUIRED && pin.is_none() => {
            pin = Some(read_pin_cstring()?);
            eprintln!("Touch the token…");
            enroll(&mut dev, req, pin.as_deref())
        }
        other => other,
    };
    if let Some(p) = pin.take() {
        let mut bytes = p.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
    }
    let enrolled = enrolled.map_err(|e| e.to_string())?;
    // The authfile may have changed while the token waited: re-read, then replace atomically.
    let current = read_authfile(&files.authfile)?;
    if current != before {
        eprintln!("note: the authfile changed during enrolment; adding to the current content");
    }
    let after =
        edit::add(&current, &req.user, enrolled.credential.clone()).map_err(|e| e.to_string())?;
    CounterStore::new(&files.state)
        .record_enrolment(
            &CredentialKey::of(&enrolled.credential.public_key),
            enrolled.counter,
        )
        .map_err(|e| e.to_string())?;
    write_authfile(&files.authfile, &after)?;
    println!(
        "enrolled {} for {} (id {}, counter {}{})",
        enrolled.credential.public_key.cose_type().as_str(),
        req.user,
        edit::short_id(&enrolled.credential),
        enrolled.counter,
        if enrolled.counter == 0 {
            ": this token has no signature counter, clone detection is off for it"
        } else {
            ""
        }
    );
    Ok(())
}

fn read_pin_cstring() -> Result<CString, String> {
    let p = pin::read_pin("Token PIN: ").map_err(|e| format!("reading the PIN: {e}"))?;
    CString::new(p.as_bytes()).map_err(|_| "the PIN contains NUL".to_owned())
}

fn run_list(user: Option<&str>, files: &Files) -> Result<(), String> {
    let text = read_authfile(&files.authfile)?;
    let store = CounterStore::new(&files.state);
    for (u, entry) in edit::list(&text) {
        if user.is_some_and(|want| want != u) {
            continue;
        }
        match entry {
            Err(e) => println!("{u}\tMALFORMED\t{e}"),
            Ok(e) => {
                for c in &e.credentials {
                    let counter = match store.get(&CredentialKey::of(&c.public_key)) {
                        Ok(Some(n)) => n.to_string(),
                        Ok(None) => "-".into(),
                        Err(_) => "?".into(),
                    };
                    let mut opts = Vec::new();
                    if c.options.presence {
                        opts.push("presence");
                    }
                    if c.options.verification {
                        opts.push("verification");
                    }
                    if c.options.pin {
                        opts.push("pin");
                    }
                    println!(
                        "{u}\t{}\t{}{}\t{}\tcounter {counter}",
                        edit::short_id(c),
                        c.public_key.cose_type().as_str(),
                        match (&c.key_handle, c.old_format) {
                            (pam_keybound::authfile::KeyHandle::Resident, _) => " resident",
                            (_, true) => " old-format",
                            _ => "",
                        },
                        if opts.is_empty() {
                            "-".into()
                        } else {
                            opts.join("+")
                        },
                    );
                }
            }
        }
    }
    Ok(())
}

fn run_remove(user: &str, credential: Option<&str>, files: &Files) -> Result<(), String> {
    let text = read_authfile(&files.authfile)?;
    let (after, gone) = edit::remove(&text, user, credential).map_err(|e| e.to_string())?;
    write_authfile(&files.authfile, &after)?;
    let store = CounterStore::new(&files.state);
    for c in &gone {
        store
            .remove(&CredentialKey::of(&c.public_key))
            .map_err(|e| e.to_string())?;
        println!("removed {} of {user}", edit::short_id(c));
    }
    if gone.is_empty() {
        println!("removed the malformed line of {user}");
    }
    Ok(())
}
