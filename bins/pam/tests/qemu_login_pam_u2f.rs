//! pam_u2f (Debian's libpam-u2f, in the guest image) as the comparison (issue 6, items 8 and 9):
//! the shipped /etc/pam.d/sshd with pam_keybound's line swapped for pam_u2f's, same authfile,
//! same origin (`pam://keybound`), same token, same guest. The swap is a bind mount over
//! /etc/pam.d/sshd made through the test-only maintenance channel; sshd reads the stack at every
//! connection.

mod guest;

use std::time::Instant;

use board::Board;
use guest::*;

/// pam_u2f's line, in place of pam_keybound's, with the same authfile and relying party.
const PAM_U2F: &str =
    "pam_u2f.so authfile=/etc/keybound/u2f_keys origin=pam://keybound appid=pam://keybound cue";

/// Which module the guest's sshd stack uses for the token.
fn use_module(g: &Guest, pam_u2f: bool) {
    let command = if pam_u2f {
        format!(
            "sed 's#pam_keybound\\.so .*#{PAM_U2F}#' /etc/pam.d/sshd > /run/sshd-u2f && \
             grep -q pam_u2f /run/sshd-u2f && mount --bind /run/sshd-u2f /etc/pam.d/sshd"
        )
    } else {
        "umount /etc/pam.d/sshd; grep -q pam_keybound /etc/pam.d/sshd".to_owned()
    };
    g.board
        .maintenance_exec(&command)
        .expect("switching the stack");
}

#[test]
fn qemu_pam_u2f_comparison_same_token_same_guest() {
    let mut g = Guest::boot("pam-u2f");
    let token = g.enrolled_token();
    g.plug(&token);
    use_module(&g, true);

    let ok = g.ssh("u2f-right", right());
    assert_granted("pam_u2f: right password + token", &ok);
    let before = token.requests();
    assert_denied(
        "pam_u2f: wrong password",
        &g.ssh("u2f-wrong", WRONG_PASSWORD),
    );
    assert_eq!(token.requests(), before, "pam_u2f: the token was asked");
    g.reset_faillock();
    g.unplug(&token);
    let right_none = g.ssh("u2f-right-none", right());
    assert_denied("pam_u2f: right password, no token", &right_none);
    g.reset_faillock();
    let wrong_none = g.ssh("u2f-wrong-none", WRONG_PASSWORD);
    let (a, b) = (Exchange::of(&right_none), Exchange::of(&wrong_none));
    eprintln!(
        "figures: pam_u2f, right vs wrong password without a token: difference {}",
        a.first_difference(&b)
    );
    g.reset_faillock();

    // The same token through pam_keybound afterwards: pam_u2f does not keep counters, so the
    // first pam_keybound login records this token's counter and is accepted.
    use_module(&g, false);
    g.plug(&token);
    assert_granted("pam_keybound after pam_u2f", &g.ssh("kb-right", right()));
    g.board.power_cut().unwrap();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The bench (issue 6, item 9): granted SSH logins (right password + token + touch) through
/// pam_keybound and through pam_u2f, interleaved, same guest, same token; prints the medians
/// and their ratio. `KEYBOUND_LOGIN_BENCH_N` logins each (default 10).
#[test]
#[ignore = "bench: cargo nextest run -p pam-keybound --run-ignored only -E 'test(/qemu_bench/)' --no-capture"]
fn qemu_bench_login_latency_pam_keybound_vs_pam_u2f() {
    let n: usize = std::env::var("KEYBOUND_LOGIN_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut g = Guest::boot("bench");
    let token = g.enrolled_token();
    g.plug(&token);
    let (mut keybound, mut u2f, mut keybound_denied, mut u2f_denied) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The stack is pam_keybound's except while a pam_u2f login runs.
    for i in 0..n {
        for pam_u2f in [false, true] {
            if pam_u2f {
                use_module(&g, true);
            }
            let start = Instant::now();
            assert_granted("bench", &g.ssh(&format!("bench-{i}"), right()));
            let took = secs(start);
            if pam_u2f {
                use_module(&g, false);
                u2f.push(took);
            } else {
                keybound.push(took);
            }
        }
    }
    g.unplug(&token);
    for i in 0..n {
        for pam_u2f in [false, true] {
            if pam_u2f {
                use_module(&g, true);
            }
            let start = Instant::now();
            assert_denied("bench, no token", &g.ssh(&format!("none-{i}"), right()));
            let took = secs(start);
            if pam_u2f {
                use_module(&g, false);
                u2f_denied.push(took);
            } else {
                keybound_denied.push(took);
            }
            g.reset_faillock();
        }
    }
    let (k, u) = (median(&mut keybound), median(&mut u2f));
    let (kd, ud) = (median(&mut keybound_denied), median(&mut u2f_denied));
    eprintln!(
        "figures: SSH login with the token, N = {n} each, median: pam_keybound {k:.3} s, \
         pam_u2f {u:.3} s, ratio {:.2}; denied without a token: pam_keybound {kd:.3} s, \
         pam_u2f {ud:.3} s, ratio {:.2}",
        k / u,
        kd / ud
    );
    g.board.power_cut().unwrap();
}
