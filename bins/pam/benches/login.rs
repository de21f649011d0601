//! Login figures (not assertions): `cargo bench -p pam-keybound --bench login [-- N]`.
//!
//! 1. Token authentication latency: the whole flow (device discovery, silent probe, assertion,
//!    verification, counter store with fsync) against virtual-fido over its raw socket through
//!    libfido2's custom I/O.
//! 2. The oracle figure (issue 6, item 5): the shipped sshd auth stack driven through Linux-PAM,
//!    with pam_unix replaced by pam_permit ("right password") or pam_deny ("wrong password"),
//!    pam_faillock with `nodelay` and a temp tally dir, no token present; N tries each way,
//!    interleaved. Prints the means, their difference and Welch's t.

#[path = "../tests/libpam/mod.rs"]
mod libpam;

use libpam::module_path;
use std::ffi::{CString, c_int};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pam_keybound::auth::{ConvError, Conversation};
use pam_keybound::authfile::{CoseType, UserEntry, format_line};
use pam_keybound::enroll::{EnrollRequest, enroll};
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

fn stats(name: &str, v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let p = |q: f64| v[((n - 1.0) * q).round() as usize];
    println!(
        "{name}: n={} mean={:.3} ms median={:.3} ms p95={:.3} ms sd={:.3} ms",
        v.len(),
        mean,
        p(0.5),
        p(0.95),
        var.sqrt()
    );
    (mean, var)
}

fn token_latency(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let token = Token::in_memory(TokenConfig::default());
    let socket = dir.path().join("t.sock");
    RawSocketServer::bind(&socket, Arc::clone(&token), EngineConfig::default())
        .unwrap()
        .spawn();
    let source = DeviceSource::RawSockets(vec![socket.clone()]);
    let path = CString::new(socket.to_str().unwrap()).unwrap();
    let mut dev = source.open(&path, Some(Duration::from_secs(10))).unwrap();
    let e = enroll(
        &mut dev,
        &EnrollRequest {
            user: "root".into(),
            origin: "pam://bench".into(),
            appid: None,
            resident: false,
            cose_type: CoseType::Es256,
            pin: false,
            verification: false,
            no_presence: false,
        },
        None,
    )
    .unwrap();
    drop(dev);
    let authfile = dir.path().join("keys");
    let line = format_line(&UserEntry {
        user: "root".into(),
        credentials: vec![e.credential],
    });
    std::fs::write(&authfile, line + "\n").unwrap();
    std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = [
        format!("authfile={}", authfile.display()),
        format!("state={}", dir.path().join("counters").display()),
        "origin=pam://bench".into(),
    ];
    let opts = Options::parse(&args, |_| Ok(None)).unwrap();
    let flow = Authenticator::new(opts, source, Logger::memory().0);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(flow.authenticate("root", &mut Silent), AuthOutcome::Success);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stats("token auth (virtual-fido, raw socket, es256)", &mut times);
}

fn write_stack(dir: &Path, name: &str, password_module: &str) {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/guest/pam/sshd"),
    )
    .unwrap();
    let tally = dir.join("faillock");
    let _ = std::fs::create_dir(&tally);
    let auth: String = shipped
        .lines()
        .filter(|l| l.starts_with("auth"))
        .map(|l| {
            let l = l.replace("pam_unix.so", password_module).replace(
                "pam_keybound.so authfile=/etc/keybound/u2f_keys",
                &format!(
                    "{} authfile={} state={}",
                    module_path().display(),
                    dir.join("keys").display(),
                    dir.join("counters").display()
                ),
            );
            if l.contains("pam_faillock.so") {
                format!("{l} dir={} nodelay\n", tally.display())
            } else {
                l + "\n"
            }
        })
        .collect();
    std::fs::write(dir.join("pam.d").join(name), auth).unwrap();
}

fn pam_once(confdir: &Path, service: &str, user: &str) -> (f64, c_int) {
    let t = Instant::now();
    let (r, _) = libpam::authenticate(confdir, service, user);
    (t.elapsed().as_secs_f64() * 1e3, r)
}

fn oracle(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pam.d")).unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(
        &keys,
        format!(
            "root:AQIDBAUGBwgJCgsMDQ4PEA==,{},es256,+presence\n",
            "AQ".repeat(42) + "AQ=="
        ),
    )
    .unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_stack(dir.path(), "right", "pam_permit.so");
    write_stack(dir.path(), "wrong", "pam_deny.so");
    let confdir = dir.path().join("pam.d");
    let (right, wrong, user) = ("right", "wrong", "root");
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (t, r) = pam_once(&confdir, right, user);
        assert_eq!(r, 7);
        a.push(t);
        let (t, r) = pam_once(&confdir, wrong, user);
        assert_eq!(r, 7);
        b.push(t);
    }
    let (ma, va) = stats("right password, no token (PAM_AUTH_ERR)", &mut a);
    let (mb, vb) = stats("wrong password           (PAM_AUTH_ERR)", &mut b);
    let t = (ma - mb) / (va / n as f64 + vb / n as f64).sqrt();
    println!(
        "mean difference (right - wrong) = {:.3} ms; Welch's t = {t:.2}",
        ma - mb
    );
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    token_latency((n / 4).max(10));
    oracle(n);
}
