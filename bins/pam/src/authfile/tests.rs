use super::*;
use proptest::prelude::*;

const KH: &str =
    "Vbr+yRJcbIWfs5LlCM+u4ATn0R8dj/6oWi4Fc6D4e8SNvy2MiXYD63cSgUUk6XgCLy8wXIHS9HYtq0D2gNk+Ug==";
// 64 bytes x‖y, base64 (not a real point: parsing does not check the curve).
const PK: &str =
    "gbDaLSthfa8GfwF4jqUh3EYaHhjEd5kQxwKE/qjMW4N7XmIQfv7mp9mK8WCTmwuOfHQ2QHv8S/jUrpRLmAa9kQ==";

#[test]
fn new_format_pamu2fcfg_lines() {
    let line = format!("alice:{KH},{PK},es256,+presence");
    let e = parse_line(&line).unwrap();
    assert_eq!(e.user, "alice");
    assert_eq!(e.credentials.len(), 1);
    let c = &e.credentials[0];
    assert!(matches!(c.key_handle, KeyHandle::Id(ref k) if k.len() == 64));
    assert_eq!(c.public_key.cose_type(), CoseType::Es256);
    assert_eq!(
        c.options,
        CredentialOptions {
            presence: true,
            verification: false,
            pin: false
        }
    );
    assert!(!c.old_format);
    assert_eq!(format_line(&e), line);

    // -P (no presence): empty options, trailing comma kept.
    let line = format!("bob:{KH},{PK},es256,");
    let e = parse_line(&line).unwrap();
    assert_eq!(e.credentials[0].options, CredentialOptions::default());
    assert_eq!(format_line(&e), line);

    // -r -N -V, eddsa, two credentials.
    let ed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let line =
        format!("carol:*,{ed},eddsa,+presence+verification+pin:{KH},{PK},es256,+presence+pin");
    let e = parse_line(&line).unwrap();
    assert_eq!(e.credentials.len(), 2);
    assert_eq!(e.credentials[0].key_handle, KeyHandle::Resident);
    assert_eq!(e.credentials[0].public_key, PublicKey::EdDsa([7; 32]));
    assert!(e.credentials[0].options.verification && e.credentials[0].options.pin);
    assert!(e.credentials[1].options.pin && !e.credentials[1].options.verification);
    assert_eq!(format_line(&e), line);
}

#[test]
fn old_format_line() {
    let kh = URL_SAFE_NO_PAD.encode([0x11u8; 64]);
    let pk = format!("04{}", "ab".repeat(64));
    let e = parse_line(&format!("dave:{kh},{pk}")).unwrap();
    let c = &e.credentials[0];
    assert!(c.old_format);
    assert!(c.options.presence);
    assert_eq!(c.key_handle, KeyHandle::Id(vec![0x11; 64]));
    assert_eq!(format_line(&e), format!("dave:{kh},{pk}"));
}

#[test]
fn malformed_lines_are_errors() {
    let cases = [
        ("alice", AuthfileError::NoUser),
        (":x,y", AuthfileError::NoUser),
        ("alice:", AuthfileError::NoCredentials),
        (
            "alice:abc",
            AuthfileError::FieldCount {
                index: 0,
                fields: 1,
            },
        ),
        (
            "alice:a,b,c",
            AuthfileError::FieldCount {
                index: 0,
                fields: 3,
            },
        ),
        (
            "alice:!!!,{PK},es256,+presence",
            AuthfileError::KeyHandle(0),
        ),
        (
            "alice:{KH},AAAA,es256,+presence",
            AuthfileError::PublicKey(0),
        ),
        (
            "alice:{KH},{PK},es384,+presence",
            AuthfileError::CoseType(0),
        ),
        ("alice:{KH},{PK},es256,+presense", AuthfileError::Options(0)),
        ("alice:{KH},{PK},es256,presence", AuthfileError::Options(0)),
        ("alice:{KH},{PK},es256,+pin+pin", AuthfileError::Options(0)),
        (
            "alice:{KH},{PK},eddsa,+presence",
            AuthfileError::PublicKey(0),
        ),
        (
            "alice:{KH},{PK},es256,+presence:",
            AuthfileError::FieldCount {
                index: 1,
                fields: 1,
            },
        ),
        // old format: key not 04…, wrong length, not hex
        ("alice:AAAA,05{H}", AuthfileError::PublicKey(0)),
        ("alice:AAAA,04ab", AuthfileError::PublicKey(0)),
        ("alice:AAAA,04{X}", AuthfileError::PublicKey(0)),
        ("alice:,04{H}", AuthfileError::KeyHandle(0)),
    ];
    for (tmpl, want) in cases {
        let line = tmpl
            .replace("{KH}", KH)
            .replace("{PK}", PK)
            .replace("{H}", &"ab".repeat(64))
            .replace("{X}", &"zz".repeat(64));
        assert_eq!(parse_line(&line), Err(want), "{line}");
    }
}

#[test]
fn last_line_for_a_user_wins_and_others_are_not_validated() {
    let content = format!(
        "# comment\nalice:{KH},{PK},es256,+presence\nbob:garbage\n\nalice:{KH},{PK},es256,+presence+pin\nalicia:{KH},{PK},es256,\n"
    );
    let e = find_user(&content, "alice").unwrap().unwrap();
    assert!(e.credentials[0].options.pin);
    assert_eq!(find_user(&content, "eve"), Ok(None));
    assert!(find_user(&content, "bob").is_err());
    // A malformed last line is an error even if an earlier one was good.
    let content = format!("alice:{KH},{PK},es256,+presence\nalice:broken\n");
    assert!(find_user(&content, "alice").is_err());
}

fn arb_credential() -> impl Strategy<Value = Credential> {
    (
        prop_oneof![
            Just(KeyHandle::Resident),
            proptest::collection::vec(any::<u8>(), 1..200).prop_map(KeyHandle::Id)
        ],
        prop_oneof![
            proptest::array::uniform32(any::<u8>()).prop_map(PublicKey::EdDsa),
            (
                proptest::array::uniform32(any::<u8>()),
                proptest::array::uniform32(any::<u8>())
            )
                .prop_map(|(x, y)| {
                    let mut k = [4u8; 65];
                    k[1..33].copy_from_slice(&x);
                    k[33..].copy_from_slice(&y);
                    PublicKey::Es256(k)
                })
        ],
        any::<(bool, bool, bool)>(),
    )
        .prop_map(
            |(key_handle, public_key, (presence, verification, pin))| Credential {
                key_handle,
                public_key,
                options: CredentialOptions {
                    presence,
                    verification,
                    pin,
                },
                old_format: false,
            },
        )
}

proptest! {
    #[test]
    fn parse_never_panics(s in "\\PC*") {
        let _ = parse_line(&s);
        let _ = find_user(&s, "alice");
    }

    #[test]
    fn parse_never_panics_on_near_valid(s in "[a-z]{1,5}:[A-Za-z0-9+/=*,:+]{0,300}") {
        let _ = parse_line(&s);
    }

    #[test]
    fn valid_lines_round_trip(user in "[a-z_][a-z0-9_.-]{0,31}", creds in proptest::collection::vec(arb_credential(), 1..4)) {
        let e = UserEntry { user, credentials: creds };
        let line = format_line(&e);
        prop_assert_eq!(parse_line(&line), Ok(e.clone()));
        prop_assert_eq!(find_user(&format!("x:y\n{line}\n"), &e.user), Ok(Some(e)));
    }

    #[test]
    fn old_format_round_trips(kh in proptest::collection::vec(any::<u8>(), 1..200), xy in proptest::collection::vec(any::<u8>(), 64)) {
        let mut pk = [4u8; 65];
        pk[1..].copy_from_slice(&xy);
        let e = UserEntry { user: "u".into(), credentials: vec![Credential {
            key_handle: KeyHandle::Id(kh), public_key: PublicKey::Es256(pk),
            options: CredentialOptions { presence: true, ..Default::default() }, old_format: true }] };
        prop_assert_eq!(parse_line(&format_line(&e)), Ok(e));
    }
}
