//! User presence, scripted: the policy says what the "user" does when the token asks for a touch.

use std::str::FromStr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::ctaphid::KeepaliveStatus;

/// The link back to the host while a request waits: keepalives out, `CANCEL` in.
pub trait Interaction {
    /// Sends a `KEEPALIVE` with `status` on the request's channel.
    fn keepalive(&self, status: KeepaliveStatus);
    /// Whether the host cancelled the request (`CTAPHID_CANCEL` or `INIT` on its channel).
    fn cancelled(&self) -> bool;
    /// How often to send keepalives.
    fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(100)
    }
}

/// An [`Interaction`] that never cancels and drops keepalives (in-process callers, U2F).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Interaction for Silent {
    fn keepalive(&self, _: KeepaliveStatus) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// What the simulated user does when the token asks for presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum PresencePolicy {
    /// Touches at once.
    Accept,
    /// Refuses at once (CTAP2: `OPERATION_DENIED`; U2F: `CONDITIONS_NOT_SATISFIED`).
    Deny,
    /// Never touches: keepalives until the presence time-out, then `USER_ACTION_TIMEOUT`.
    Timeout,
    /// Touches after `ms` milliseconds (keepalives meanwhile).
    Delay {
        /// The delay in milliseconds.
        ms: u64,
    },
    /// Waits for a `touch` control command, up to the presence time-out.
    WaitForTouch,
}

impl FromStr for PresencePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "accept" => Self::Accept,
            "deny" => Self::Deny,
            "timeout" => Self::Timeout,
            "wait-for-touch" => Self::WaitForTouch,
            _ => match s.strip_prefix("delay:").map(str::parse::<u64>) {
                Some(Ok(ms)) => Self::Delay { ms },
                _ => {
                    return Err(format!(
                        "unknown presence policy {s:?} (accept, deny, timeout, delay:MS, wait-for-touch)"
                    ));
                }
            },
        })
    }
}

/// Why presence was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// The user refused.
    #[error("presence denied")]
    Denied,
    /// Nobody touched in time.
    #[error("presence timed out")]
    TimedOut,
    /// The host cancelled the request.
    #[error("request cancelled by the host")]
    Cancelled,
}

#[derive(Debug)]
struct State {
    policy: PresencePolicy,
    touch_pending: bool,
    waiting: bool,
}

/// The token's button: a policy, a pending touch, and the wait.
#[derive(Debug)]
pub struct Presence {
    state: Mutex<State>,
    touched: Condvar,
    timeout: Duration,
}

impl Presence {
    /// A button following `policy`; waits give up after `timeout`.
    pub fn new(policy: PresencePolicy, timeout: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                policy,
                touch_pending: false,
                waiting: false,
            }),
            touched: Condvar::new(),
            timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current policy.
    pub fn policy(&self) -> PresencePolicy {
        self.lock().policy
    }

    /// Changes the policy; a wait in progress follows the new one.
    pub fn set_policy(&self, policy: PresencePolicy) {
        self.lock().policy = policy;
        self.touched.notify_all();
    }

    /// Touches the button. The touch is kept until a presence check consumes it.
    pub fn touch(&self) {
        self.lock().touch_pending = true;
        self.touched.notify_all();
    }

    /// Whether a request is waiting for presence now.
    pub fn waiting(&self) -> bool {
        self.lock().waiting
    }

    /// Whether a touch is pending.
    pub fn touch_pending(&self) -> bool {
        self.lock().touch_pending
    }

    /// Waits for presence as CTAP2 does: keepalives (`UPNEEDED`) every interval, `CANCEL`
    /// honoured, policy re-read on every wake-up.
    pub fn wait(&self, io: &dyn Interaction) -> Result<(), PresenceError> {
        let start = Instant::now();
        let mut state = self.lock();
        state.waiting = true;
        let result = loop {
            let elapsed = start.elapsed();
            match state.policy {
                PresencePolicy::Accept => break Ok(()),
                PresencePolicy::Deny => break Err(PresenceError::Denied),
                PresencePolicy::Delay { ms } if elapsed >= Duration::from_millis(ms) => {
                    break Ok(());
                }
                PresencePolicy::WaitForTouch if state.touch_pending => {
                    state.touch_pending = false;
                    break Ok(());
                }
                PresencePolicy::Timeout | PresencePolicy::WaitForTouch
                    if elapsed >= self.timeout =>
                {
                    break Err(PresenceError::TimedOut);
                }
                _ => {}
            }
            if io.cancelled() {
                break Err(PresenceError::Cancelled);
            }
            drop(state);
            io.keepalive(KeepaliveStatus::UpNeeded);
            state = self.lock();
            let mut wait = io.keepalive_interval();
            if let PresencePolicy::Delay { ms } = state.policy {
                wait = wait.min(Duration::from_millis(ms).saturating_sub(elapsed));
            }
            state = self
                .touched
                .wait_timeout(state, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        state.waiting = false;
        result
    }

    /// Checks presence without waiting, as U2F does (the host polls): `accept` yes, `deny` and
    /// `timeout` no, `delay` sleeps then yes, `wait-for-touch` consumes a pending touch.
    pub fn check_now(&self) -> bool {
        let mut state = self.lock();
        match state.policy {
            PresencePolicy::Accept => true,
            PresencePolicy::Deny | PresencePolicy::Timeout => false,
            PresencePolicy::Delay { ms } => {
                drop(state);
                std::thread::sleep(Duration::from_millis(ms));
                true
            }
            PresencePolicy::WaitForTouch => std::mem::take(&mut state.touch_pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    struct Recorder {
        keepalives: AtomicUsize,
        cancel: AtomicBool,
    }
    impl Interaction for Recorder {
        fn keepalive(&self, status: KeepaliveStatus) {
            assert_eq!(status, KeepaliveStatus::UpNeeded);
            self.keepalives.fetch_add(1, Ordering::SeqCst);
        }
        fn cancelled(&self) -> bool {
            self.cancel.load(Ordering::SeqCst)
        }
        fn keepalive_interval(&self) -> Duration {
            Duration::from_millis(10)
        }
    }

    #[test]
    fn policies_parse_from_the_command_line() {
        assert_eq!("accept".parse(), Ok(PresencePolicy::Accept));
        assert_eq!("delay:250".parse(), Ok(PresencePolicy::Delay { ms: 250 }));
        assert_eq!("wait-for-touch".parse(), Ok(PresencePolicy::WaitForTouch));
        assert!("delay:x".parse::<PresencePolicy>().is_err());
        assert!("maybe".parse::<PresencePolicy>().is_err());
    }

    #[test]
    fn accept_deny_and_timeout() {
        let io = Recorder::default();
        let p = Presence::new(PresencePolicy::Accept, Duration::from_millis(50));
        assert_eq!(p.wait(&io), Ok(()));
        p.set_policy(PresencePolicy::Deny);
        assert_eq!(p.wait(&io), Err(PresenceError::Denied));
        p.set_policy(PresencePolicy::Timeout);
        assert_eq!(p.wait(&io), Err(PresenceError::TimedOut));
        assert!(io.keepalives.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn delay_sends_keepalives_then_accepts() {
        let io = Recorder::default();
        let p = Presence::new(PresencePolicy::Delay { ms: 40 }, Duration::from_secs(5));
        assert_eq!(p.wait(&io), Ok(()));
        assert!(io.keepalives.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn wait_for_touch_is_released_by_a_touch_and_by_cancel() {
        let p = Arc::new(Presence::new(
            PresencePolicy::WaitForTouch,
            Duration::from_secs(30),
        ));
        let toucher = {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                while !p.waiting() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                p.touch();
            })
        };
        assert_eq!(p.wait(&Recorder::default()), Ok(()));
        toucher.join().unwrap();
        assert!(!p.touch_pending(), "the touch was consumed");
        let io = Recorder::default();
        io.cancel.store(true, Ordering::SeqCst);
        assert_eq!(p.wait(&io), Err(PresenceError::Cancelled));
    }

    #[test]
    fn u2f_check_consumes_a_touch() {
        let p = Presence::new(PresencePolicy::WaitForTouch, Duration::from_secs(1));
        assert!(!p.check_now());
        p.touch();
        assert!(p.check_now());
        assert!(!p.check_now());
    }
}
