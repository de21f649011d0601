//! The guest login matrix over SSH (issue 6, item 8): the host's OpenSSH client against the
//! shipped sshd and /etc/pam.d/sshd on a QEMU board, with virtual-fido on the board's USB bus.
//! Three boots, each serving many logins: the password/token policy and the no-oracle checks;
//! wrong tokens, removed enrolments and clones; the token failures.

mod guest;

use std::time::{Duration, Instant};

use board::Board;
use guest::*;

#[test]
fn qemu_ssh_login_password_then_token_no_oracle_lockout() {
    let mut g = Guest::boot("ssh-matrix");
    let token = g.enrolled_token();
    g.plug(&token);

    // Right password + enrolled token + touch → shell.
    let start = Instant::now();
    let ok = g.ssh("right-token", right());
    assert_granted("right password + enrolled token", &ok);
    assert_eq!(ok.prompts, vec!["(tech@127.0.0.1) Password: "]);
    eprintln!(
        "figures: granted login {:.2} s; client saw messages {:?}",
        secs(start),
        ok.messages
    );

    // Wrong password, token present → denied before the token is asked.
    let before = token.requests();
    let wrong_with_token = g.ssh("wrong-token", WRONG_PASSWORD);
    assert_denied("wrong password + token", &wrong_with_token);
    assert_eq!(
        token.requests(),
        before,
        "the token was asked although the password was wrong"
    );
    g.reset_faillock();

    // No token: a right and a wrong password look the same to the client.
    g.unplug(&token);
    let right_no_token = g.ssh("right-none", right());
    assert_denied("right password, no token", &right_no_token);
    g.reset_faillock();
    let wrong_no_token = g.ssh("wrong-none", WRONG_PASSWORD);
    assert_denied("wrong password, no token", &wrong_no_token);
    let (a, b) = (Exchange::of(&right_no_token), Exchange::of(&wrong_no_token));
    assert!(
        a == b,
        "right and wrong password without a token differ: {}",
        a.first_difference(&b)
    );
    assert_eq!(right_no_token.prompts, vec!["(tech@127.0.0.1) Password: "]);
    g.reset_faillock();

    // A locked account (five failures) with the right password and the token: the same silent
    // denial as a wrong password, and the token is never asked.
    g.plug(&token);
    for i in 0..5 {
        assert_denied("lockout", &g.ssh(&format!("lock-{i}"), WRONG_PASSWORD));
    }
    let before = token.requests();
    let locked = g.ssh("locked-right", right());
    assert_denied("locked account, right password + token", &locked);
    assert_eq!(
        token.requests(),
        before,
        "a locked account reached the token"
    );
    let locked_wrong = g.ssh("locked-wrong", WRONG_PASSWORD);
    let (a, b) = (Exchange::of(&locked), Exchange::of(&locked_wrong));
    assert!(
        a == b,
        "a locked account differs from a wrong password: {}",
        a.first_difference(&b)
    );
    g.board.power_cut().unwrap();
}

#[test]
fn qemu_ssh_wrong_token_removed_enrolment_and_clones() {
    let mut g = Guest::boot("ssh-tokens");
    let token = g.enrolled_token();

    // A token that holds no credential of the user.
    let other = g.blank_token();
    g.plug(&other);
    assert_denied("wrong token", &g.ssh("wrong-token", right()));
    g.unplug(&other);
    g.reset_faillock();

    // The enrolment removed from the authfile (the token itself unchanged).
    g.plug(&token);
    g.board
        .maintenance_exec(
            "cp -p /etc/keybound/u2f_keys /run/u2f_keys.saved && \
             sed -i '/^tech:/d' /etc/keybound/u2f_keys",
        )
        .unwrap();
    assert_denied("enrolment removed", &g.ssh("removed", right()));
    g.board
        .maintenance_exec("cp -p /run/u2f_keys.saved /etc/keybound/u2f_keys")
        .unwrap();
    g.reset_faillock();
    assert_granted("enrolment restored", &g.ssh("restored", right()));

    // A clone made now, used after the original: the original is accepted, the clone's counter
    // did not increase → denied and logged.
    other.clone_from(&token);
    assert_granted("original before its clone", &g.ssh("original", right()));
    g.unplug(&token);
    g.plug(&other);
    assert_denied(
        "clone used after the original",
        &g.ssh("clone-after", right()),
    );
    let log = g.syslog();
    let clone_lines = log.lines().filter(|l| l.contains(CLONE_LOG)).count();
    assert!(
        clone_lines >= 1,
        "no clone warning in the guest's syslog:\n{log}"
    );
    g.unplug(&other);
    g.reset_faillock();

    // The documented risk: a clone used first is accepted; the original is then denied and logged.
    other.clone_from(&token);
    g.plug(&other);
    assert_granted(
        "clone used first (risk: accepted)",
        &g.ssh("clone-first", right()),
    );
    g.unplug(&other);
    g.plug(&token);
    assert_denied(
        "original after its clone was used",
        &g.ssh("original-after", right()),
    );
    let log = g.syslog();
    assert!(
        log.lines().filter(|l| l.contains(CLONE_LOG)).count() > clone_lines,
        "the original's denial was not logged as a possible clone:\n{log}"
    );
    g.board.power_cut().unwrap();
}

#[test]
fn qemu_ssh_token_failures_are_denied_and_sshd_keeps_serving() {
    let mut g = Guest::boot("ssh-faults");
    let token = g.enrolled_token();
    g.plug(&token);
    let listener = g.sshd_listener().expect("sshd listens on port 22");
    let mut figures = Vec::new();

    for (case, policy) in [("presence denied", "deny"), ("presence timeout", "timeout")] {
        token.presence(policy);
        let start = Instant::now();
        assert_denied(case, &g.ssh(policy, right()));
        figures.push(format!("{case} {:.1} s", secs(start)));
        token.presence("accept");
        g.reset_faillock();
    }

    // Malformed, oversized, missing and cut-off replies. A login reads three CBOR replies
    // (getInfo at open, the silent probe, the assertion) and may fall back to U2F: every reply
    // of the login is faulty (one-shot faults, queued).
    for fault in ["corrupt", "oversize", "stall", "drop"] {
        for _ in 0..4 {
            token.fault(fault);
        }
        let start = Instant::now();
        assert_denied(fault, &g.ssh(fault, right()));
        figures.push(format!("{fault} {:.1} s", secs(start)));
        token.control(serde_json::json!({"cmd": "clear-faults"}));
        if fault == "drop" {
            // The token unplugged itself mid-reply: plug it in again.
            token.control(serde_json::json!({"cmd": "plug"}));
            board_kit::wait_for_hidraw(&g.board, true);
        }
        assert_eq!(
            g.sshd_listener().as_deref(),
            Some(listener.as_str()),
            "sshd stopped serving after the {fault} fault"
        );
        g.reset_faillock();
    }

    // Pulled out while the module waits for the touch.
    token.presence("wait-for-touch");
    let workdir = g.session_dir("pulled");
    let start = Instant::now();
    let pulled = std::thread::scope(|s| {
        let board = &g.board;
        let login = s.spawn(move || ssh_login(board, right(), &workdir));
        let deadline = Instant::now() + Duration::from_secs(120);
        while token.status()["waiting_for_presence"] != true {
            assert!(
                Instant::now() < deadline && !login.is_finished(),
                "the token never waited for a touch"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        token.control(serde_json::json!({"cmd": "unplug"}));
        login.join().unwrap()
    });
    assert_denied("token pulled mid-assertion", &pulled);
    figures.push(format!("pulled {:.1} s", secs(start)));
    token.control(serde_json::json!({"cmd": "plug"}));
    token.presence("accept");
    board_kit::wait_for_hidraw(&g.board, true);
    g.reset_faillock();

    // Still serving: the same listener, and a right login goes through.
    assert_eq!(g.sshd_listener().as_deref(), Some(listener.as_str()));
    assert_granted("after the failures", &g.ssh("after", right()));
    eprintln!("figures: denial times {}", figures.join(", "));
    g.board.power_cut().unwrap();
}
