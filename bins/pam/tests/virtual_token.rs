//! The whole flow against virtual-fido over its raw CTAPHID socket, through libfido2's custom
//! I/O: enrolment, assertion, verification (UP, rpId, key), counters, no oracle, timeouts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pam_keybound::AuthOutcome;
use pam_keybound::authfile::{CoseType, KeyHandle, PublicKey};
use pam_keybound::counters::{CounterStore, CredentialKey};
use pam_keybound::log::Level;
use virtual_fido::PresencePolicy;

fn denied(out: &AuthOutcome) -> &str {
    match out {
        AuthOutcome::Denied(why) => why,
        other => panic!("expected denial, got {other:?}"),
    }
}

#[test]
fn enrolled_es256_token_authenticates_and_counter_advances() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    CounterStore::new(lab.state())
        .record_enrolment(&CredentialKey::of(&e.credential.public_key), e.counter)
        .unwrap();
    let (out, conv, _) = lab.run("root", &["cue"], lab.source());
    assert_eq!(out, AuthOutcome::Success);
    assert_eq!(conv.calls, vec!["info:Please touch the device.".to_owned()]);
    let store = CounterStore::new(lab.state());
    let key = CredentialKey::of(&e.credential.public_key);
    let first = store.get(&key).unwrap().unwrap();
    assert!(first > e.counter);
    assert_eq!(lab.run("root", &[], lab.source()).0, AuthOutcome::Success);
    assert!(store.get(&key).unwrap().unwrap() > first);
    // PAM_SILENT: the same success without the cue.
    let (log, _) = pam_keybound::log::Logger::memory();
    let flow =
        pam_keybound::Authenticator::new(lab.options(&["cue"]), lab.source(), log).silent(true);
    let mut conv = Recorder::default();
    assert_eq!(flow.authenticate("root", &mut conv), AuthOutcome::Success);
    assert!(conv.calls.is_empty());
}

#[test]
fn eddsa_and_resident_credentials_authenticate() {
    let lab = Lab::new();
    let ed = lab.enroll("root", CoseType::EdDsa, false);
    lab.write_authfile(&[entry("root", &ed)]);
    assert_eq!(lab.run("root", &[], lab.source()).0, AuthOutcome::Success);
    let rk = lab.enroll("root", CoseType::Es256, true);
    assert_eq!(rk.credential.key_handle, KeyHandle::Resident);
    lab.write_authfile(&[entry("root", &rk)]);
    assert_eq!(lab.run("root", &[], lab.source()).0, AuthOutcome::Success);
}

#[test]
fn no_token_means_no_cue_no_prompt_no_message() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    let (out, conv, _) = lab.run("root", &["cue"], missing_socket(lab.dir.path()));
    denied(&out);
    assert!(conv.calls.is_empty(), "{:?}", conv.calls);
    // Unplugged token: the same.
    lab.token.set_plugged(false);
    let (out, conv, _) = lab.run("root", &["cue"], lab.source());
    denied(&out);
    assert!(conv.calls.is_empty(), "{:?}", conv.calls);
}

#[test]
fn user_without_credentials_is_denied_silently_or_ignored_with_nouserok() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("someoneelse", &e)]);
    let before = lab.token.status().requests;
    let (out, conv, _) = lab.run("root", &["cue"], lab.source());
    denied(&out);
    assert!(conv.calls.is_empty());
    // The token was probed all the same (no oracle on who has credentials).
    assert!(lab.token.status().requests > before);
    let (out, conv, _) = lab.run("root", &["cue", "nouserok"], lab.source());
    assert_eq!(out, AuthOutcome::Ignore);
    assert!(conv.calls.is_empty());
}

#[test]
fn unsafe_authfile_never_skips_even_with_nouserok() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    std::fs::set_permissions(lab.authfile(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (out, conv, logs) = lab.run("root", &["nouserok", "cue"], lab.source());
    assert!(denied(&out).contains("authfile refused"));
    assert!(conv.calls.is_empty());
    assert!(
        logs.iter()
            .any(|(l, m)| *l == Level::Error && m.contains("writable"))
    );
    // A shared authfile owned by a user (even a user with no credentials in it) is refused.
    std::fs::set_permissions(lab.authfile(), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(lab.authfile(), Some(65534), None).unwrap();
    let (out, _, _) = lab.run("root", &["nouserok"], lab.source());
    assert!(denied(&out).contains("owned by uid 65534"), "{out:?}");
    std::os::unix::fs::chown(lab.authfile(), Some(0), None).unwrap();
    assert_eq!(lab.run("root", &[], lab.source()).0, AuthOutcome::Success);
    // A missing shared authfile is a failure too.
    std::fs::remove_file(lab.authfile()).unwrap();
    let (out, _, _) = lab.run("root", &["nouserok"], lab.source());
    assert!(denied(&out).contains("does not exist"));
}

#[test]
fn wrong_origin_finds_no_credential() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    let (out, conv, _) = lab.run("root", &["cue", "origin=pam://elsewhere"], lab.source());
    denied(&out);
    assert!(conv.calls.is_empty());
}

#[test]
fn wrong_public_key_is_denied_and_not_recorded() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    let other = lab.enroll("root", CoseType::Es256, false);
    let mut forged = e.clone();
    forged.credential.public_key = other.credential.public_key.clone();
    lab.write_authfile(&[entry("root", &forged)]);
    let (out, _, logs) = lab.run("root", &[], lab.source());
    denied(&out);
    assert!(
        logs.iter().any(|(_, m)| m.contains("bad signature")),
        "{logs:?}"
    );
    let key = CredentialKey::of(&forged.credential.public_key);
    assert_eq!(CounterStore::new(lab.state()).get(&key).unwrap(), None);
    // An invalid point is refused too.
    let mut bad = e.clone();
    bad.credential.public_key = PublicKey::Es256([4; 65]);
    lab.write_authfile(&[entry("root", &bad)]);
    denied(&lab.run("root", &[], lab.source()).0);
}

#[test]
fn presence_denied_is_denied_and_userpresence_0_skips_the_touch() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    lab.token.presence().set_policy(PresencePolicy::Deny);
    denied(&lab.run("root", &[], lab.source()).0);
    // pam_u2f's userpresence=0 overrides +presence: no touch asked, UP not required.
    assert_eq!(
        lab.run("root", &["userpresence=0"], lab.source()).0,
        AuthOutcome::Success
    );
}

#[test]
fn verification_required_but_token_cannot_verify_is_denied() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    // virtual-fido has no built-in UV and no PIN set: the UV flag can never be set.
    denied(&lab.run("root", &["userverification=1"], lab.source()).0);
}

#[test]
fn conversation_abort_at_the_cue_or_pin_prompt_denies() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    let (log, _) = pam_keybound::log::Logger::memory();
    let flow = pam_keybound::Authenticator::new(lab.options(&["cue"]), lab.source(), log.clone());
    let mut conv = Recorder {
        abort: true,
        ..Recorder::default()
    };
    assert!(denied(&flow.authenticate("root", &mut conv)).contains("aborted"));
    let flow =
        pam_keybound::Authenticator::new(lab.options(&["pinverification=1"]), lab.source(), log);
    let mut conv = Recorder {
        abort: true,
        ..Recorder::default()
    };
    assert!(denied(&flow.authenticate("root", &mut conv)).contains("aborted"));
    assert_eq!(conv.calls, vec!["secret:Please enter the PIN: ".to_owned()]);
}

#[test]
fn counter_rollback_is_denied_and_logged_as_clone() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    assert_eq!(lab.run("root", &[], lab.source()).0, AuthOutcome::Success);
    let recorded = CounterStore::new(lab.state())
        .get(&CredentialKey::of(&e.credential.public_key))
        .unwrap()
        .unwrap();
    // Roll the token's counter back (the silent probe and the assertion each add one).
    lab.token.set_counter(recorded.saturating_sub(2)).unwrap();
    let (out, _, logs) = lab.run("root", &[], lab.source());
    assert!(denied(&out).contains("POSSIBLE CLONED TOKEN"));
    assert!(
        logs.iter()
            .any(|(l, m)| *l == Level::Warning && m.contains("POSSIBLE CLONED TOKEN"))
    );
    // Nothing was recorded by the denial: the record stands.
    assert_eq!(
        CounterStore::new(lab.state())
            .get(&CredentialKey::of(&e.credential.public_key))
            .unwrap(),
        Some(recorded)
    );
}

#[test]
fn cloned_token_used_after_the_original_is_denied() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    let (clone, clone_socket) = lab.second_token();
    clone.import_state(lab.token.export_state()).unwrap();
    // The original is used first (twice).
    assert_eq!(lab.run("root", &[], lab.source()).0, AuthOutcome::Success);
    assert_eq!(lab.run("root", &[], lab.source()).0, AuthOutcome::Success);
    // The clone still carries the older counter.
    let src = pam_keybound::fido::DeviceSource::RawSockets(vec![clone_socket]);
    let (out, _, logs) = lab.run("root", &[], src);
    assert!(denied(&out).contains("POSSIBLE CLONED TOKEN"));
    assert!(logs.iter().any(|(l, _)| *l == Level::Warning));
}

#[test]
fn presence_timeout_is_bounded_by_the_timeout_option() {
    // The token would wait 120 s for a touch; `timeout=1` must end the wait long before.
    let lab = Lab::with_presence_timeout(Duration::from_secs(120));
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    lab.token.presence().set_policy(PresencePolicy::Timeout);
    let started = Instant::now();
    let (out, _, _) = lab.run("root", &["timeout=1"], lab.source());
    denied(&out);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the wait was not bounded by timeout=1: {:?}",
        started.elapsed()
    );
}

#[test]
fn pin_credential_prompts_after_the_token_is_found_and_needs_the_right_pin() {
    let lab = Lab::new();
    lab.device()
        .set_pin(&std::ffi::CString::new("4711").unwrap(), None)
        .unwrap();
    let e = lab.enroll_with("root", CoseType::Es256, false, true, Some("4711"));
    assert!(e.credential.options.pin);
    lab.write_authfile(&[entry("root", &e)]);
    let (log, _) = pam_keybound::log::Logger::memory();
    let flow = pam_keybound::Authenticator::new(lab.options(&["cue"]), lab.source(), log);
    let mut conv = Recorder {
        pin: Some("4711".into()),
        ..Recorder::default()
    };
    assert_eq!(flow.authenticate("root", &mut conv), AuthOutcome::Success);
    assert_eq!(
        conv.calls,
        vec![
            "info:Please touch the device.".to_owned(),
            "secret:Please enter the PIN: ".to_owned()
        ]
    );
    let mut conv = Recorder {
        pin: Some("0000".into()),
        ..Recorder::default()
    };
    denied(&flow.authenticate("root", &mut conv));
    // Without a token: no cue and no PIN prompt.
    let (out, conv, _) = lab.run("root", &["cue"], missing_socket(lab.dir.path()));
    denied(&out);
    assert!(conv.calls.is_empty());
}

#[test]
fn old_format_credential_uses_the_appid_as_relying_party() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    let mut old = e.clone();
    old.credential.old_format = true;
    lab.write_authfile(&[entry("root", &old)]);
    let text = std::fs::read_to_string(lab.authfile()).unwrap();
    assert!(!text.contains("es256"), "old format line: {text}");
    // appid defaults to the origin, which is what the credential was made for.
    assert_eq!(lab.run("root", &[], lab.source()).0, AuthOutcome::Success);
    // Another appid: the token holds no such credential.
    denied(&lab.run("root", &["appid=pam://other"], lab.source()).0);
    // The appid does not apply to new-format credentials.
    lab.write_authfile(&[entry("root", &e)]);
    assert_eq!(
        lab.run("root", &["appid=pam://other"], lab.source()).0,
        AuthOutcome::Success
    );
}

#[test]
fn malformed_oversized_stalled_or_dropped_replies_end_cleanly() {
    use virtual_fido::faults::Fault;
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    for fault in [Fault::Corrupt, Fault::Oversize, Fault::Stall, Fault::Drop] {
        // Arm the same fault for every CBOR/U2F reply of one login (getInfo, probe, assertion).
        for _ in 0..4 {
            lab.token.faults().arm(fault);
        }
        let started = Instant::now();
        let (out, _, _) = lab.run("root", &["timeout=3"], lab.source());
        // Every reply of the login was damaged: no assertion can verify.
        denied(&out);
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{fault:?}: not bounded by timeout=3 ({:?})",
            started.elapsed()
        );
        lab.token.faults().clear();
        // The module and the token recover: the next login works.
        assert_eq!(
            lab.run("root", &[], lab.source()).0,
            AuthOutcome::Success,
            "after {fault:?}"
        );
    }
}

#[test]
fn token_pulled_while_waiting_for_the_touch_is_denied() {
    let lab = Lab::new();
    let e = lab.enroll("root", CoseType::Es256, false);
    lab.write_authfile(&[entry("root", &e)]);
    lab.token
        .presence()
        .set_policy(PresencePolicy::WaitForTouch);
    let token = std::sync::Arc::clone(&lab.token);
    let puller = std::thread::spawn(move || {
        while !token.presence().waiting() {
            std::thread::sleep(Duration::from_millis(5));
        }
        token.set_plugged(false);
    });
    let (out, _, _) = lab.run("root", &["timeout=20"], lab.source());
    puller.join().unwrap();
    denied(&out);
}
