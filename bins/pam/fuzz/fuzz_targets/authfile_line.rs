//! Any authfile text: no panic; a line that parses formats back to itself (semantically).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_keybound::authfile::{find_user, format_line, parse_line};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = find_user(&text, "alice");
    for line in text.lines() {
        if let Ok(entry) = parse_line(line) {
            assert_eq!(parse_line(&format_line(&entry)), Ok(entry));
        }
    }
});
