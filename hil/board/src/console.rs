//! The serial console: every line timestamped into a transcript, with an expect API.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::BoardError;

/// One console line and when it arrived (since the console was created).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsoleLine {
    /// Time since the console was created.
    pub at: Duration,
    /// The text, without line ending.
    pub text: String,
}

/// A position in the console output: expectations look only after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    line: usize,
    col: usize,
}

#[derive(Default)]
struct State {
    lines: Vec<ConsoleLine>,
    partial: String,
    closed: bool,
    transcript: Option<File>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    start: Instant,
}

/// A board's serial console.
pub struct Console {
    shared: Arc<Shared>,
    writer: Mutex<Option<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Shared {
    fn push_line(&self, state: &mut State, text: String) {
        let at = self.start.elapsed();
        if let Some(t) = state.transcript.as_mut() {
            let _ = writeln!(t, "[{:>9.3}] {text}", at.as_secs_f64());
        }
        state.lines.push(ConsoleLine { at, text });
    }
}

impl Console {
    /// A console with no board attached yet; lines go to `transcript` if given.
    pub fn new(transcript: Option<&Path>) -> Result<Self, BoardError> {
        let transcript = transcript
            .map(|p| File::create(p).map_err(BoardError::io("creating transcript", p)))
            .transpose()?;
        let state = State {
            transcript,
            closed: true,
            ..State::default()
        };
        Ok(Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                changed: Condvar::new(),
                start: Instant::now(),
            }),
            writer: Mutex::new(None),
        })
    }

    /// Attaches a running board's console: `reader` is read on a thread until it ends.
    pub fn attach(
        &self,
        mut reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
    ) {
        {
            let mut state = self.shared.state.lock().expect("console lock");
            state.closed = false;
        }
        *self.writer.lock().expect("console writer lock") = Some(Box::new(writer));
        let shared = Arc::clone(&self.shared);
        thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut state = shared.state.lock().expect("console lock");
                    for ch in String::from_utf8_lossy(&buf[..n]).chars() {
                        match ch {
                            '\n' => {
                                let line = std::mem::take(&mut state.partial);
                                shared.push_line(&mut state, line);
                            }
                            '\r' => {}
                            c => state.partial.push(c),
                        }
                    }
                    drop(state);
                    shared.changed.notify_all();
                }
                let mut state = shared.state.lock().expect("console lock");
                if !state.partial.is_empty() {
                    let line = std::mem::take(&mut state.partial);
                    shared.push_line(&mut state, line);
                }
                state.closed = true;
                drop(state);
                shared.changed.notify_all();
            })
            .expect("spawning the console thread");
    }

    /// Writes a line of the board's own firmware log (prefixed `[firmware]`): what a Pi's boot
    /// ROM and bootloader print on the UART, played by the harness on emulated boards. Unlike
    /// harness notes, these lines are the board's output and guest-side expectations see them.
    pub fn firmware(&self, text: &str) {
        self.push_local(format!("[firmware] {text}"));
    }

    /// Writes a harness annotation into the transcript (prefixed `[harness]`).
    pub fn note(&self, text: &str) {
        self.push_local(format!("[harness] {text}"));
    }

    /// Records a line made on this side of the wire (harness or firmware) and wakes waiters.
    fn push_local(&self, line: String) {
        let mut state = self.shared.state.lock().expect("console lock");
        self.shared.push_line(&mut state, line);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// The current end of the output.
    pub fn mark(&self) -> Mark {
        let state = self.shared.state.lock().expect("console lock");
        Mark {
            line: state.lines.len(),
            col: state.partial.len(),
        }
    }

    /// Waits until a line after `from` matches `pattern` (a regex; the unfinished last line,
    /// such as a `login: ` prompt, counts too). Returns the matching text and the mark just after
    /// the match.
    pub fn expect_after(
        &self,
        from: Mark,
        pattern: &str,
        timeout: Duration,
    ) -> Result<(String, Mark), BoardError> {
        self.expect_lines(from, pattern, timeout, false)
    }

    /// Like [`Console::expect_after`], but only the board's own output counts: the harness's
    /// notes (`[harness] …`, which may quote patterns or the command line) never match.
    pub fn expect_guest_after(
        &self,
        from: Mark,
        pattern: &str,
        timeout: Duration,
    ) -> Result<(String, Mark), BoardError> {
        self.expect_lines(from, pattern, timeout, true)
    }

    fn expect_lines(
        &self,
        from: Mark,
        pattern: &str,
        timeout: Duration,
        guest_only: bool,
    ) -> Result<(String, Mark), BoardError> {
        let re =
            Regex::new(pattern).map_err(|e| BoardError::Pattern(pattern.into(), e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("console lock");
        loop {
            let candidates = state
                .lines
                .iter()
                .map(|l| l.text.as_str())
                .chain(std::iter::once(state.partial.as_str()));
            for (index, text) in candidates.enumerate().skip(from.line) {
                if guest_only && text.starts_with("[harness] ") {
                    continue;
                }
                let start = if index == from.line {
                    from.col.min(text.len())
                } else {
                    0
                };
                if let Some(m) = text.get(start..).and_then(|t| re.find(t)) {
                    let end = start + m.end();
                    return Ok((
                        text.to_string(),
                        Mark {
                            line: index,
                            col: end,
                        },
                    ));
                }
            }
            if state.closed {
                drop(state);
                return Err(BoardError::ConsoleClosed {
                    pattern: pattern.into(),
                    tail: self.tail(20),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                return Err(BoardError::ExpectTimeout {
                    pattern: pattern.into(),
                    timeout,
                    tail: self.tail(20),
                });
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .expect("console lock")
                .0;
        }
    }

    /// Waits for `pattern` anywhere in the output so far or to come.
    pub fn expect(&self, pattern: &str, timeout: Duration) -> Result<String, BoardError> {
        self.expect_after(Mark::default(), pattern, timeout)
            .map(|(text, _)| text)
    }

    /// Types `text` on the console.
    pub fn send(&self, text: &str) -> Result<(), BoardError> {
        let mut writer = self.writer.lock().expect("console writer lock");
        let w = writer.as_mut().ok_or_else(|| BoardError::State {
            board: "console".into(),
            reason: "not attached".into(),
        })?;
        w.write_all(text.as_bytes())
            .and_then(|_| w.flush())
            .map_err(|e| BoardError::State {
                board: "console".into(),
                reason: format!("write failed: {e}"),
            })
    }

    /// The whole line a mark returned by an expectation points into: waits up to `timeout` for
    /// the board to finish it (a match can be on the line still arriving), then returns it; the
    /// unfinished text if the line is not finished by then.
    pub fn whole_line_at(&self, at: Mark, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("console lock");
        loop {
            if let Some(line) = state.lines.get(at.line) {
                return line.text.clone();
            }
            let now = Instant::now();
            if now >= deadline || state.closed {
                return state.partial.clone();
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .expect("console lock")
                .0;
        }
    }

    /// Every complete line so far.
    pub fn lines(&self) -> Vec<ConsoleLine> {
        self.shared
            .state
            .lock()
            .expect("console lock")
            .lines
            .clone()
    }

    /// The last `n` lines (and the unfinished one), for error messages.
    pub fn tail(&self, n: usize) -> String {
        let state = self.shared.state.lock().expect("console lock");
        let mut out: Vec<String> = state
            .lines
            .iter()
            .rev()
            .take(n)
            .map(|l| format!("  | {}", l.text))
            .collect();
        out.reverse();
        if !state.partial.is_empty() {
            out.push(format!("  | {}", state.partial));
        }
        if out.is_empty() {
            "  (no console output)".into()
        } else {
            out.join("\n")
        }
    }

    /// Whether the attached board's console ended (board off).
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().expect("console lock").closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn attached() -> (Console, UnixStream, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let console = Console::new(Some(&dir.path().join("t.log"))).unwrap();
        let (board, harness) = UnixStream::pair().unwrap();
        console.attach(harness.try_clone().unwrap(), harness);
        (console, board, dir)
    }

    #[test]
    fn expect_finds_lines_and_prompts_and_respects_marks() {
        let (console, mut board, dir) = attached();
        board
            .write_all(b"booting\r\nkeybound-guest: ready\r\nlogin: ")
            .unwrap();
        console.expect("ready", Duration::from_secs(5)).unwrap();
        let (_, after) = console
            .expect_after(Mark::default(), "^login: $", Duration::from_secs(5))
            .unwrap();
        match console.expect_after(after, "login", Duration::from_millis(100)) {
            Err(BoardError::ExpectTimeout { tail, .. }) => {
                assert!(tail.contains("keybound-guest: ready"), "{tail}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        console.send("tech\n").unwrap();
        let mut typed = [0u8; 5];
        board.read_exact(&mut typed).unwrap();
        assert_eq!(&typed, b"tech\n");
        drop(board);
        match console.expect_after(after, "never", Duration::from_secs(5)) {
            Err(BoardError::ConsoleClosed { .. }) => {}
            other => panic!("expected closed, got {other:?}"),
        }
        let transcript = std::fs::read_to_string(dir.path().join("t.log")).unwrap();
        assert!(
            transcript.contains("] keybound-guest: ready\n"),
            "{transcript}"
        );
    }

    #[test]
    fn guest_expectations_ignore_harness_notes() {
        let (console, mut board, _dir) = attached();
        console.note("waiting for keybound-guest: sshd ready");
        let mark = Mark::default();
        assert!(
            console
                .expect_guest_after(mark, "sshd ready", Duration::from_millis(50))
                .is_err(),
            "a harness note matched a guest expectation"
        );
        board.write_all(b"keybound-guest: sshd ready\n").unwrap();
        let (line, _) = console
            .expect_guest_after(mark, "sshd ready", Duration::from_secs(5))
            .unwrap();
        assert_eq!(line, "keybound-guest: sshd ready");
    }

    #[test]
    fn a_bad_pattern_is_reported_not_panicked() {
        let (console, _board, _dir) = attached();
        assert!(matches!(
            console.expect("(", Duration::from_millis(10)),
            Err(BoardError::Pattern(..))
        ));
    }
}
