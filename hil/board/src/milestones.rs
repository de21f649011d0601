//! The console lines that end a boot, shared by every target (QEMU boards and real Pi rigs), so
//! each judges a boot by the same text.

/// What ends a boot on the console: up (`keybound-guest: sshd ready`), sealed (keybound-init's
/// `keybound: sealed: REASON` before it powers off), or given up (no root, a failed mount, a
/// kernel panic).
pub const BOOT_END: &str = r"keybound-guest: sshd ready|keybound(-init)?: sealed.*|keybound-guest: root PARTUUID=.* not found|keybound-guest: mounting .* failed|Kernel panic.*";

/// How a line matched by [`BOOT_END`] ends the boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEnd {
    /// Up on its root file system: sshd is ready.
    Up,
    /// The init refused to unlock; the reason it stated (text after `: sealed`).
    Sealed {
        /// The stated reason.
        reason: String,
    },
    /// The boot stopped on its way up (the whole line, for the reader).
    Stopped {
        /// The line that said so.
        line: String,
    },
}

/// Classifies a console line matched by [`BOOT_END`]. Pass the whole line (see
/// `Console::whole_line_at`): a sealed reason read from a partly received line is cut short.
pub fn classify(line: &str) -> BootEnd {
    if line.contains("sshd ready") {
        BootEnd::Up
    } else if let Some((_, reason)) = line.split_once(": sealed") {
        BootEnd::Sealed {
            reason: reason.trim_start_matches([':', ' ']).to_string(),
        }
    } else {
        BootEnd::Stopped {
            line: line.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_classified_as_the_qemu_target_reads_them() {
        let re = regex::Regex::new(BOOT_END).unwrap();
        for line in [
            "keybound-guest: sshd ready",
            "keybound: sealed: volume check failed",
            "keybound-init: sealed: zymkey: no answer",
            "keybound-guest: root PARTUUID=abcd-02 not found",
            "Kernel panic - not syncing: Attempted to kill init!",
        ] {
            assert!(re.is_match(line), "{line}");
        }
        assert_eq!(classify("keybound-guest: sshd ready"), BootEnd::Up);
        assert_eq!(
            classify("keybound: sealed: volume check failed"),
            BootEnd::Sealed {
                reason: "volume check failed".into()
            }
        );
        assert!(matches!(
            classify("Kernel panic - not syncing"),
            BootEnd::Stopped { .. }
        ));
    }
}
