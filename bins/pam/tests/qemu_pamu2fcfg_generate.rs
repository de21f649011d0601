//! Generates the committed guest fixtures with the real `pamu2fcfg` (libpam-u2f's enrolment tool,
//! in the guest image) against virtual-fido plugged into a QEMU board. Ignored: run it on purpose
//! when the fixtures must change, then commit what it wrote:
//!
//! ```sh
//! KEYBOUND_WRITE_FIXTURES=1 cargo nextest run -p pam-keybound --run-ignored only \
//!     -E 'test(/qemu_generate/)'
//! ```
//!
//! It writes (all TEST-ONLY, public):
//! - `fixtures/test-keys/virtual-fido-token-tech.json`: the token enrolled for `tech`;
//! - `fixtures/guest/test-channel/etc/keybound/u2f_keys`: its pamu2fcfg line (test images only);
//! - `fixtures/guest/test-channel/var/lib/keybound/counters`: its counter at enrolment;
//! - `bins/pam/tests/fixtures/pamu2fcfg.txt`: one pamu2fcfg run per flag combination.

use std::path::Path;

use board::Board;
use board_kit::{board, boot, repo, test_image, wait_for_hidraw};
use pam_keybound::authfile::parse_line;
use pam_keybound::counters::CredentialKey;
use qemu_runner::VirtualToken;

/// The relying party of the shipped stack (`origin=pam://keybound`).
const ORIGIN: &str = "pam://keybound";

/// pamu2fcfg's flags, every combination: resident, no presence, PIN, verification (ES256;
/// bookworm's pamu2fcfg 1.1.0 knows no EdDSA, and the token has no RS256: both runs are kept to
/// show the refusal).
fn combinations() -> Vec<String> {
    let mut out = Vec::new();
    for t in ["es256"] {
        for bits in 0..16u8 {
            let mut flags = format!("-u tech -t {t}");
            for (bit, flag) in [(1, "-r"), (2, "-P"), (4, "-N"), (8, "-V")] {
                if bits & bit != 0 {
                    flags.push(' ');
                    flags.push_str(flag);
                }
            }
            out.push(flags);
        }
    }
    // Without the user name, a foreign appid, and a key type the token does not have.
    out.extend([
        "-t es256 -n".into(),
        "-u tech -t es256 -i pam://other-appid".into(),
        "-u tech -t rs256".into(),
        "-u tech -t eddsa".into(),
    ]);
    out
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    eprintln!("wrote {}", path.display());
}

#[test]
#[ignore = "writes the committed fixtures: KEYBOUND_WRITE_FIXTURES=1 and --run-ignored only"]
fn qemu_generate_test_token_and_pamu2fcfg_fixtures() {
    assert!(
        std::env::var_os("KEYBOUND_WRITE_FIXTURES").is_some(),
        "set KEYBOUND_WRITE_FIXTURES=1: this overwrites committed fixtures"
    );
    let repo = repo();
    let image = test_image();
    let dir = tempfile::tempdir().unwrap();
    let sockets = tempfile::Builder::new().prefix("gen-").tempdir().unwrap();
    let token = VirtualToken::start(&dir.path().join("token"), sockets.path(), "accept").unwrap();
    let mut board = board(&image, "gen", dir.path());
    boot(&mut board);
    board
        .plug_usb_redir("token0", token.usbredir_socket())
        .unwrap();
    wait_for_hidraw(&board, true);

    // The technician's enrolment, as an administrator would make it with pam_u2f's tool.
    let line = board
        .maintenance_exec(&format!("pamu2fcfg -u tech -o {ORIGIN} -i {ORIGIN}"))
        .unwrap()
        .trim()
        .to_owned();
    let entry = parse_line(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(entry.user, "tech");
    let counter = token.control(serde_json::json!({"cmd": "status"})).unwrap()["counter"]
        .as_u64()
        .unwrap();
    let state = std::fs::read_to_string(token.state_dir().join("token.json")).unwrap();
    write(
        &repo.join("fixtures/test-keys/virtual-fido-token-tech.json"),
        &state,
    );
    let channel = repo.join("fixtures/guest/test-channel");
    write(&channel.join("etc/keybound/u2f_keys"), &format!("{line}\n"));
    let key = CredentialKey::of(&entry.credentials[0].public_key);
    write(
        &channel.join("var/lib/keybound/counters"),
        &format!(
            "# keybound signature counters v1\n{} {counter}\n",
            key.as_str()
        ),
    );

    // Every flag combination, in one maintenance session (each run bounded, no terminal).
    let mut script = String::from("for flags in \\\n");
    for c in combinations() {
        script.push_str(&format!("  '{c}' \\\n"));
    }
    script.push_str(&format!(
        "; do out=$(timeout 30 pamu2fcfg -o {ORIGIN} $flags </dev/null 2>&1 | tr '\\n\\t' '  '); \
         printf '%s\\t%s\\n' \"$flags\" \"$out\"; done\n"
    ));
    let runs = board.maintenance_exec(&script).unwrap();
    let version = board
        .maintenance_exec("pamu2fcfg --version 2>&1 | head -n1")
        .unwrap_or_default();
    let mut fixture = format!(
        "# pamu2fcfg ({}) against virtual-fido in the guest image, origin {ORIGIN}: one run per\n\
         # flag combination, `FLAGS<TAB>OUTPUT` (an enrolment line, or the tool's error).\n\
         # Written by tests/qemu_pamu2fcfg_generate.rs; TEST-ONLY credentials.\n",
        version.trim()
    );
    fixture.push_str(&runs);
    write(
        &repo.join("bins/pam/tests/fixtures/pamu2fcfg.txt"),
        &fixture,
    );
    eprintln!("{runs}");
    board.power_cut().unwrap();
}
