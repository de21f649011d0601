//! pam_keybound's authfile parser on lines the real `pamu2fcfg` wrote in the guest against
//! virtual-fido, one per flag combination (`tests/fixtures/pamu2fcfg.txt`, made by
//! `tests/qemu_pamu2fcfg_generate.rs`), and on the test image's enrolment line.

use std::path::Path;

use pam_keybound::authfile::{CoseType, KeyHandle, format_line, parse_line};

fn fixture(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_pamu2fcfg_flag_combination_parses_with_its_flags() {
    let text = fixture("tests/fixtures/pamu2fcfg.txt");
    let (mut parsed, mut refused) = (0, Vec::new());
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (flags, output) = line.split_once('\t').expect("FLAGS<TAB>OUTPUT");
        let output = output.trim();
        let has = |f: &str| flags.split(' ').any(|w| w == f);
        let enrolment = if has("-n") {
            // Only the credential part (`:KeyHandle,…`): the user name is the caller's to add.
            output.strip_prefix(':').map(|rest| format!("tech:{rest}"))
        } else {
            output.starts_with("tech:").then(|| output.to_owned())
        };
        let Some(enrolment) = enrolment else {
            refused.push(format!("{flags}: {output}"));
            continue;
        };
        let entry = parse_line(&enrolment).unwrap_or_else(|e| panic!("{flags}: {e}: {output}"));
        assert_eq!(entry.user, "tech", "{flags}");
        assert_eq!(entry.credentials.len(), 1, "{flags}");
        let c = &entry.credentials[0];
        let cose = if has("eddsa") {
            CoseType::EdDsa
        } else {
            CoseType::Es256
        };
        assert_eq!(c.public_key.cose_type(), cose, "{flags}");
        assert_eq!(c.key_handle == KeyHandle::Resident, has("-r"), "{flags}");
        assert_eq!(c.options.presence, !has("-P"), "{flags}");
        assert_eq!(c.options.pin, has("-N"), "{flags}");
        assert_eq!(c.options.verification, has("-V"), "{flags}");
        assert!(!c.old_format, "{flags}");
        // What we write back is what pamu2fcfg wrote.
        assert_eq!(format_line(&entry), enrolment, "{flags}");
        parsed += 1;
    }
    eprintln!(
        "figures: {parsed} pamu2fcfg lines parsed; refused by pamu2fcfg or the token: {refused:#?}"
    );
    assert!(
        parsed >= 8,
        "too few enrolments in the fixture ({parsed}): {refused:#?}"
    );
}

#[test]
fn the_test_image_enrolment_is_one_es256_presence_credential_for_tech() {
    let text = fixture("../../fixtures/guest/test-channel/etc/keybound/u2f_keys");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let entry = parse_line(lines[0]).unwrap();
    assert_eq!(entry.user, "tech");
    let c = &entry.credentials[0];
    assert_eq!(c.public_key.cose_type(), CoseType::Es256);
    assert!(c.options.presence && !c.options.pin && !c.options.verification);
    assert!(matches!(c.key_handle, KeyHandle::Id(_)));
}
