//! Progress display for long steps (indicatif), quiet when not on a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shows one line per step with a spinner or a bar; prints plain lines when not on a terminal.
#[derive(Debug, Clone)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Progress on standard error (hidden when it is not a terminal).
    pub fn stderr() -> Self {
        Self { enabled: true }
    }

    /// No output at all (tests).
    pub fn hidden() -> Self {
        Self { enabled: false }
    }

    /// Starts a step with a spinner; `len` makes it a bar instead.
    pub fn step(&self, message: impl Into<String>, len: Option<u64>) -> ProgressBar {
        let message = message.into();
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let bar = match len {
            Some(len) => ProgressBar::new(len).with_style(
                ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("valid template"),
            ),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if bar.is_hidden() {
            eprintln!("{message} …");
        }
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Prints a line above any bars.
    pub fn println(&self, line: impl AsRef<str>) {
        if self.enabled {
            eprintln!("{}", line.as_ref());
        }
    }
}
