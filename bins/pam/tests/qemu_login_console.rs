//! The serial console `login` (agetty → Debian's login → the shipped /etc/pam.d/login) on a QEMU
//! board: the same policy as SSH (issue 6, item 8). One boot.

mod guest;

use std::time::{Duration, Instant};

use board::Board;
use board_kit::TEST_USER;
use guest::*;

/// What a person at the console saw of one login attempt.
#[derive(Debug)]
struct ConsoleLogin {
    granted: bool,
    /// The guest's lines from the password prompt to the verdict (the shell's prompt or
    /// "Login incorrect"), harness notes left out.
    exchange: Vec<String>,
}

fn console_login(g: &Guest, password: &str) -> ConsoleLogin {
    let console = g.board.console();
    let limit = Duration::from_secs(120);
    let mark = console.mark();
    console.send("\n").unwrap();
    let (_, after_login) = console
        .expect_guest_after(mark, "login: ?$", limit)
        .unwrap();
    console.send(&format!("{TEST_USER}\n")).unwrap();
    let (_, after_password) = console
        .expect_guest_after(after_login, "Password: ?$", limit)
        .unwrap();
    let first = console.lines().len();
    console.send(&format!("{password}\n")).unwrap();
    let (verdict, after) = console
        .expect_guest_after(after_password, r"Login incorrect|[$#] ?(\x1b\[6n)?$", limit)
        .unwrap();
    let granted = !verdict.contains("Login incorrect");
    // Complete lines up to the verdict (the verdict line itself may still be unfinished).
    let mut exchange = Vec::new();
    for line in &console.lines()[first..] {
        if line.text.starts_with("[harness] ") {
            continue;
        }
        if line.text == verdict {
            break;
        }
        exchange.push(line.text.clone());
    }
    if granted {
        // The verdict may have matched a motd line cut short after its `#` ("… #1 SMP …", from
        // Debian's update-motd): the line is then typed before the shell prompts, the terminal
        // echoes it at once, and the output follows the prompt on its line ("$ tech").
        console.send("id -un; exit\n").unwrap();
        console
            .expect_guest_after(after, &format!("(^|[$#] ){TEST_USER}\\s*$"), limit)
            .expect("the console shell ran id -un");
    } else {
        exchange.push(verdict);
    }
    ConsoleLogin { granted, exchange }
}

#[test]
fn qemu_console_login_same_policy_as_ssh() {
    let mut g = Guest::boot("console");
    let token = g.enrolled_token();
    g.plug(&token);

    let start = Instant::now();
    let ok = console_login(&g, right());
    assert!(ok.granted, "right password + token: {ok:?}");
    assert!(
        ok.exchange
            .iter()
            .any(|l| l.contains("Please touch the device.")),
        "the cue shows once the token holding the credential is found: {ok:?}"
    );
    eprintln!("figures: console login granted in {:.1} s", secs(start));

    let before = token.requests();
    let wrong = console_login(&g, WRONG_PASSWORD);
    assert!(!wrong.granted, "wrong password: {wrong:?}");
    assert_eq!(token.requests(), before, "the token was asked");
    g.reset_faillock();

    g.unplug(&token);
    let right_none = console_login(&g, right());
    assert!(
        !right_none.granted,
        "right password, no token: {right_none:?}"
    );
    g.reset_faillock();
    let wrong_none = console_login(&g, WRONG_PASSWORD);
    assert!(!wrong_none.granted);
    assert_eq!(
        right_none.exchange, wrong_none.exchange,
        "the console shows a difference between a right and a wrong password without a token"
    );
    assert!(
        !right_none
            .exchange
            .iter()
            .any(|l| l.contains("touch") || l.contains("PIN")),
        "a cue or prompt without a token: {right_none:?}"
    );
    g.board.power_cut().unwrap();
}
