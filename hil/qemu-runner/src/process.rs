//! The QEMU child process: its own process group, killed with its owner.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A running QEMU; killed (whole process group) when dropped.
#[derive(Debug)]
pub(crate) struct QemuProcess {
    child: Child,
}

impl QemuProcess {
    /// Starts `program args…` in a new process group with SIGKILL as its parent-death signal;
    /// stdout and stderr go to `log`.
    pub(crate) fn spawn(
        program: &str,
        args: &[std::ffi::OsString],
        log: &Path,
    ) -> std::io::Result<Self> {
        let log_file = File::create(log)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; the closure touches no parent memory.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        Ok(Self {
            child: cmd.spawn()?,
        })
    }

    /// The QEMU pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether QEMU is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process group and reaps QEMU.
    pub(crate) fn kill(&mut self) {
        if self.running() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for QEMU to exit by itself.
    pub(crate) fn wait_exit(&mut self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if !self.running() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        !self.running()
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
