//! Daemon lifecycle: tell the parent we are ready, and go away when the parent does.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::thread;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

/// Writes `READY=1\n` to the parent's readiness pipe (`--ready-fd`) and closes it.
///
/// # Safety contract
/// `fd` must be a file descriptor this process owns and nothing else uses; the function takes
/// ownership of it. Call it once, after every socket the parent will connect to is listening.
pub fn notify_ready(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: the caller passes a descriptor it owns (inherited from the parent for exactly this
    // purpose, per the documented contract); we take ownership and close it after writing.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(b"READY=1\n")?;
    file.flush()
}

/// Exits the process (status 0) when `fd`, the read end of a pipe whose write end the parent
/// holds, reports hang-up or error: the board or the whole harness went away.
pub fn watch_lifeline(fd: RawFd) {
    // SAFETY: the descriptor is inherited from the parent for this purpose alone; this thread
    // owns it from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    thread::Builder::new()
        .name("lifeline".into())
        .spawn(move || {
            loop {
                let mut fds = [PollFd::new(
                    std::os::fd::AsFd::as_fd(&fd),
                    PollFlags::POLLIN | PollFlags::POLLHUP,
                )];
                match poll(&mut fds, PollTimeout::NONE) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(_) | Err(_) => {
                        tracing::info!("lifeline closed: the board went away, exiting");
                        std::process::exit(0);
                    }
                }
            }
        })
        .expect("spawning the lifeline thread");
}

/// Asks the kernel to send SIGKILL to this process when its parent exits (Linux only).
pub fn die_with_parent() -> nix::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::IntoRawFd;

    #[test]
    fn readiness_line_reaches_the_parent() {
        let (read, write) = nix::unistd::pipe().unwrap();
        notify_ready(write.into_raw_fd()).unwrap();
        let mut line = String::new();
        File::from(read).read_to_string(&mut line).unwrap();
        assert_eq!(line, "READY=1\n");
    }
}
