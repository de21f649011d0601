//! The ssh driver: the real OpenSSH client logging in as a person would.
//!
//! Keyboard-interactive prompts are answered through `SSH_ASKPASS` (forced, no terminal): a small
//! script records each prompt and hands back the next scripted answer. What the client printed
//! (banners, PAM messages, "Permission denied") is kept apart from the `-vvv` exchange, which
//! `ssh -E` writes to its own file. Passwords are test fixtures; they are written to a 0600 file
//! in the session's private directory and never logged.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::BoardError;

/// Where an sshd is reachable from the host, and the host key it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshEndpoint {
    /// Host address (loopback for QEMU boards).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The server's public host key (`ssh-ed25519 AAAA…`): checked strictly.
    pub host_key: String,
}

/// How a login went, as the client saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoginOutcome {
    /// Whether the session was granted (the command ran).
    pub granted: bool,
    /// ssh's exit status (255: ssh itself failed, e.g. authentication).
    pub exit_code: Option<i32>,
    /// Every prompt the client was asked to answer, in order.
    pub prompts: Vec<String>,
    /// What the client printed on stderr: banners, PAM messages, errors.
    pub messages: String,
    /// The command's output.
    pub stdout: String,
    /// The `-vvv` debug log of the exchange.
    pub verbose: String,
    /// Whether the session was killed at the timeout.
    pub timed_out: bool,
}

impl LoginOutcome {
    /// What a person at a terminal would have seen besides the prompts: the client's messages,
    /// then the non-debug lines of the `-E` log (with `-E` ssh writes its own messages, such as
    /// "Permission denied …", there rather than on stderr).
    pub fn seen_messages(&self) -> String {
        let mut messages = self.messages.trim_end().to_string();
        for line in self.verbose.lines() {
            if !line.starts_with("debug") && !line.starts_with("OpenSSH_") && !line.is_empty() {
                if !messages.is_empty() {
                    messages.push('\n');
                }
                messages.push_str(line);
            }
        }
        messages
    }
}

/// A keyboard-interactive login to run.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    /// The account.
    pub user: &'a str,
    /// Answers to the prompts, in order (an extra prompt gets an empty answer).
    pub answers: &'a [&'a str],
    /// The command to run once logged in.
    pub command: &'a str,
    /// Give up (kill the client) after this long.
    pub timeout: Duration,
}

const ASKPASS: &str = r#"#!/bin/sh
# keybound harness askpass: records the prompt, answers with the next scripted line.
d="$(dirname "$0")"
printf '%s\036' "$1" >> "$d/prompts"
n=$(cat "$d/count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$d/count"
sed -n "${n}p" "$d/answers"
"#;

fn write_private(path: &Path, content: &[u8], mode: u32) -> Result<(), BoardError> {
    fs::write(path, content).map_err(BoardError::io("writing", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(BoardError::io("chmod", path))
}

fn known_hosts(dir: &Path, endpoint: &SshEndpoint) -> Result<PathBuf, BoardError> {
    let path = dir.join("known_hosts");
    let line = format!(
        "[{}]:{} {}\n",
        endpoint.host, endpoint.port, endpoint.host_key
    );
    write_private(&path, line.as_bytes(), 0o600)?;
    Ok(path)
}

fn base_command(endpoint: &SshEndpoint, known_hosts: &Path) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "none", "-p", &endpoint.port.to_string()])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "ServerAliveInterval=5",
        ])
        // 60 s of silence: while PAM waits for a token (the shipped stack's `timeout=15`) sshd
        // answers no keepalive, and a client giving up first would hide the server's verdict.
        .args(["-o", "ServerAliveCountMax=12"])
        .stdin(Stdio::null());
    // No controlling terminal: prompts can only go through askpass.
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd
}

/// Runs `cmd` to completion or until `timeout`, collecting stdout and stderr.
fn run_bounded(
    mut cmd: Command,
    timeout: Duration,
) -> Result<(Option<i32>, String, String, bool), BoardError> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BoardError::Ssh(format!("starting ssh (package openssh-client): {e}")))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| BoardError::Ssh(e.to_string()))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().map_err(|e| BoardError::Ssh(e.to_string()))?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    Ok((status.code(), stdout, stderr, timed_out))
}

/// Logs in with keyboard-interactive authentication as a person would, and runs `login.command`.
/// `workdir` receives the session's private files (askpass, answers, known_hosts, the -vvv log).
pub fn login(
    endpoint: &SshEndpoint,
    login: &Login<'_>,
    workdir: &Path,
) -> Result<LoginOutcome, BoardError> {
    fs::create_dir_all(workdir).map_err(BoardError::io("creating", workdir))?;
    fs::set_permissions(workdir, fs::Permissions::from_mode(0o700))
        .map_err(BoardError::io("chmod", workdir))?;
    for stale in ["prompts", "count", "verbose.log"] {
        let _ = fs::remove_file(workdir.join(stale));
    }
    let askpass = workdir.join("askpass");
    write_private(&askpass, ASKPASS.as_bytes(), 0o700)?;
    let answers: String = login.answers.iter().map(|a| format!("{a}\n")).collect();
    write_private(&workdir.join("answers"), answers.as_bytes(), 0o600)?;
    let verbose_log = workdir.join("verbose.log");
    let known = known_hosts(workdir, endpoint)?;

    let mut cmd = base_command(endpoint, &known);
    cmd.args(["-vvv", "-E"])
        .arg(&verbose_log)
        .args([
            "-o",
            "PreferredAuthentications=keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args([
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "BatchMode=no",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args(["-l", login.user, &endpoint.host, "--", login.command])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", "keybound-harness:0")
        .env_remove("SSH_AUTH_SOCK");
    let (exit_code, stdout, messages, timed_out) = run_bounded(cmd, login.timeout)?;
    let prompts = fs::read(workdir.join("prompts"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\u{1e}')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let verbose = fs::read_to_string(&verbose_log).unwrap_or_default();
    Ok(LoginOutcome {
        granted: exit_code == Some(0) && !timed_out,
        exit_code,
        prompts,
        messages,
        stdout,
        verbose,
        timed_out,
    })
}

/// Runs `command` as root over a test-only maintenance channel with public-key `key`.
pub fn exec_with_key(
    endpoint: &SshEndpoint,
    key: &Path,
    command: &str,
    timeout: Duration,
    workdir: &Path,
) -> Result<String, BoardError> {
    fs::create_dir_all(workdir).map_err(BoardError::io("creating", workdir))?;
    let private_key = workdir.join("maintenance_key");
    if !private_key.exists() {
        let bytes = fs::read(key).map_err(BoardError::io("reading maintenance key", key))?;
        write_private(&private_key, &bytes, 0o600)?;
    }
    let known = known_hosts(workdir, endpoint)?;
    let mut cmd = base_command(endpoint, &known);
    cmd.arg("-i")
        .arg(&private_key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ])
        .args(["-l", "root", &endpoint.host, "--", command]);
    let (code, stdout, stderr, timed_out) = run_bounded(cmd, timeout)?;
    match code {
        Some(0) if !timed_out => Ok(stdout),
        _ if timed_out => Err(BoardError::Ssh(format!(
            "maintenance command {command:?} timed out after {timeout:?}"
        ))),
        _ => Err(BoardError::Ssh(format!(
            "maintenance command {command:?} exited {code:?}: {}",
            stderr.trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_messages_keep_the_clients_words_and_drop_the_debug_log() {
        let outcome = LoginOutcome {
            granted: false,
            exit_code: Some(255),
            prompts: vec!["Password: ".into()],
            messages: "banner\n".into(),
            stdout: String::new(),
            verbose: "OpenSSH_9.2p1\ndebug1: x\ntech@127.0.0.1: Permission denied (keyboard-interactive).\n"
                .into(),
            timed_out: false,
        };
        assert_eq!(
            outcome.seen_messages(),
            "banner\ntech@127.0.0.1: Permission denied (keyboard-interactive)."
        );
    }
}
