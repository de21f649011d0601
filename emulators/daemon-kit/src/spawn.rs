//! The parent's side of the daemon lifecycle: start a daemon with a readiness pipe and a
//! lifeline, wait until it is ready, kill it (and only it) when done.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::Signal;

/// A running daemon started by [`Daemon::spawn`]; killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Holding the write end keeps the daemon alive; dropping it tells the daemon to exit.
    lifeline: Option<OwnedFd>,
    name: String,
}

/// Why a daemon did not come up.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program could not be started.
    #[error("starting {program}: {source}")]
    Start {
        /// The program.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited or stayed silent instead of reporting ready.
    #[error("{program} did not report ready ({reason}); its log:\n{log}")]
    NotReady {
        /// The program.
        program: String,
        /// What happened.
        reason: String,
        /// The tail of the daemon's log.
        log: String,
    },
}

fn inheritable(fd: &OwnedFd) -> nix::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map(|_| ())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(20).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl Daemon {
    /// Starts `command` with `--ready-fd N --lifeline-fd M` appended, its output to `log`, in its
    /// own process group with SIGKILL as parent-death signal, and waits up to `timeout` for
    /// `READY=1`.
    pub fn spawn(mut command: Command, log: &Path, timeout: Duration) -> Result<Self, SpawnError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let start_err = |source| SpawnError::Start {
            program: program.clone(),
            source,
        };
        // Close-on-exec from birth, so no other child started meanwhile inherits our ends.
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (ready_read, ready_write) =
            nix::unistd::pipe2(cloexec).map_err(|e| start_err(e.into()))?;
        let (life_read, life_write) =
            nix::unistd::pipe2(cloexec).map_err(|e| start_err(e.into()))?;
        inheritable(&ready_write).map_err(|e| start_err(e.into()))?;
        inheritable(&life_read).map_err(|e| start_err(e.into()))?;
        let log_file = File::create(log).map_err(start_err)?;
        command
            .arg("--ready-fd")
            .arg(ready_write.as_raw_fd().to_string())
            .arg("--lifeline-fd")
            .arg(life_read.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(start_err)?)
            .stderr(log_file)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no parent memory.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(start_err)?;
        drop(ready_write);
        drop(life_read);
        let mut daemon = Self {
            child,
            lifeline: Some(life_write),
            name: program.clone(),
        };

        let mut ready = File::from(ready_read);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // One line is the whole message; the daemon need not close the pipe after it.
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while line.len() < 64 && matches!(ready.read(&mut byte), Ok(1)) {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
        });
        let deadline = Instant::now() + timeout;
        let not_ready = |reason: String| SpawnError::NotReady {
            program: program.clone(),
            reason,
            log: tail(log),
        };
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.starts_with("READY=1") => return Ok(daemon),
                Ok(_) => {
                    let status = daemon.child.wait().ok();
                    return Err(not_ready(format!(
                        "closed its readiness pipe; exit status {status:?}"
                    )));
                }
                Err(_) if Instant::now() >= deadline => {
                    return Err(not_ready(format!("nothing within {timeout:?}")));
                }
                Err(_) => {}
            }
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the daemon at once (SIGKILL), as a crash or a pulled module would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the daemon to exit by closing its lifeline, waits up to `timeout`, then kills it.
    pub fn stop(&mut self, timeout: Duration) {
        self.lifeline = None;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("{} ignored its lifeline; killing it", self.name);
        self.kill();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell "daemon" honouring the contract: `$2` is the ready fd, `$4` the lifeline fd.
    fn shell(script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", script, "bash"]);
        cmd
    }

    #[test]
    fn a_ready_daemon_exits_by_itself_when_its_lifeline_closes() {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Daemon::spawn(
            shell(r#"eval "echo READY=1 >&$2"; eval "cat <&$4"; echo lifeline closed"#),
            &dir.path().join("log"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(daemon.is_running());
        daemon.stop(Duration::from_secs(10));
        assert!(!daemon.is_running());
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(
            log.contains("lifeline closed"),
            "the daemon saw its lifeline close: {log:?}"
        );
    }

    #[test]
    fn a_daemon_dying_before_ready_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        match Daemon::spawn(
            shell("echo cannot bind socket >&2; exit 3"),
            &dir.path().join("log"),
            Duration::from_secs(10),
        ) {
            Err(SpawnError::NotReady { log, .. }) => {
                assert!(log.contains("cannot bind socket"), "{log}")
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
    }
}
