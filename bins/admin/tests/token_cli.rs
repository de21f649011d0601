//! `keybound token enroll/list/remove` against virtual-fido (raw socket), and the enrolled
//! credential then accepted by pam_keybound's flow.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use pam_keybound::auth::{ConvError, Conversation};
use pam_keybound::fido::DeviceSource;
use pam_keybound::log::Logger;
use pam_keybound::options::Options;
use pam_keybound::{AuthOutcome, Authenticator};
use virtual_fido::ctaphid::EngineConfig;
use virtual_fido::transport::raw_socket::RawSocketServer;
use virtual_fido::{Token, TokenConfig};
use zeroize::Zeroizing;

struct Silent;
impl Conversation for Silent {
    fn info(&mut self, _: &str) -> Result<(), ConvError> {
        Ok(())
    }
    fn error(&mut self, _: &str) -> Result<(), ConvError> {
        Ok(())
    }
    fn secret(&mut self, _: &str) -> Result<Zeroizing<String>, ConvError> {
        Err(ConvError)
    }
}

fn keybound(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(args)
        .arg("--authfile")
        .arg(dir.join("etc/u2f_keys"))
        .arg("--state")
        .arg(dir.join("var/counters"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn authenticate(dir: &Path, socket: &Path, user: &str) -> AuthOutcome {
    let args = [
        format!("authfile={}", dir.join("etc/u2f_keys").display()),
        format!("state={}", dir.join("var/counters").display()),
        "origin=pam://keybound".to_owned(),
        "timeout=10".to_owned(),
    ];
    let opts = Options::parse(&args, |_| Ok(None)).unwrap();
    let (log, _) = Logger::memory();
    Authenticator::new(opts, DeviceSource::RawSockets(vec![socket.to_owned()]), log)
        .authenticate(user, &mut Silent)
}

#[test]
fn enroll_list_remove_round_trip_with_the_pam_flow() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = Token::in_memory(TokenConfig::default());
    let socket = dir.path().join("token.sock");
    RawSocketServer::bind(&socket, Arc::clone(&token), EngineConfig::default())
        .unwrap()
        .spawn();
    let sock = socket.to_str().unwrap();

    let (ok, out, err) = keybound(
        dir.path(),
        &["token", "enroll", "--user", "root", "--raw-socket", sock],
    );
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("enrolled es256 for root"), "{out}");
    let (ok, _, err) = keybound(
        dir.path(),
        &[
            "token",
            "enroll",
            "--user",
            "root",
            "--type",
            "eddsa",
            "--raw-socket",
            sock,
        ],
    );
    assert!(ok, "{err}");
    let authfile = dir.path().join("etc/u2f_keys");
    let mode = std::fs::metadata(&authfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&authfile).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(",es256,+presence:") && text.ends_with(",eddsa,+presence\n"),
        "{text}"
    );

    let (ok, list, _) = keybound(dir.path(), &["token", "list", "--user", "root"]);
    assert!(ok);
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(rows.iter().all(|r| r.contains("counter ")), "{list}");
    assert!(
        !rows[0].contains("counter -"),
        "enrolment records the counter: {list}"
    );

    assert_eq!(
        authenticate(dir.path(), &socket, "root"),
        AuthOutcome::Success
    );

    // Remove the first credential by id prefix, then all.
    let id = rows[0].split('\t').nth(1).unwrap();
    let (ok, out, err) = keybound(
        dir.path(),
        &[
            "token",
            "remove",
            "--user",
            "root",
            "--credential",
            &id[..10],
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains(id));
    let (_, list, _) = keybound(dir.path(), &["token", "list"]);
    assert_eq!(list.lines().count(), 1);
    // The remaining eddsa credential still works.
    assert_eq!(
        authenticate(dir.path(), &socket, "root"),
        AuthOutcome::Success
    );
    let (ok, _, _) = keybound(dir.path(), &["token", "remove", "--user", "root"]);
    assert!(ok);
    assert_eq!(std::fs::read_to_string(&authfile).unwrap(), "");
    assert!(matches!(
        authenticate(dir.path(), &socket, "root"),
        AuthOutcome::Denied(_)
    ));
    // Nothing left to remove.
    assert!(!keybound(dir.path(), &["token", "remove", "--user", "root"]).0);
}

#[test]
fn enroll_refuses_an_unsafe_authfile_and_a_missing_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    let authfile = dir.path().join("etc/u2f_keys");
    std::fs::write(&authfile, "").unwrap();
    std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o666)).unwrap();
    let missing = dir.path().join("none.sock");
    let (ok, _, err) = keybound(
        dir.path(),
        &[
            "token",
            "enroll",
            "--user",
            "root",
            "--raw-socket",
            missing.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains("authfile refused"), "{err}");
    std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _, err) = keybound(
        dir.path(),
        &[
            "token",
            "enroll",
            "--user",
            "root",
            "--raw-socket",
            missing.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains("no FIDO device found"), "{err}");
    let (ok, _, err) = keybound(dir.path(), &["token", "enroll", "--user", "a:b"]);
    assert!(!ok);
    assert!(err.contains("user name"), "{err}");
}
