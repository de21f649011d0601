//! Every CTAP2 command, in process over CTAPHID: success and error codes, and each feature
//! getInfo advertises.

mod common;

use std::time::Duration;

use ciborium::Value;
use common::*;
use virtual_fido::authenticator::{ALGORITHMS, AttestationMode, EXTENSIONS, VERSIONS, rp_id_hash};
use virtual_fido::crypto;
use virtual_fido::ctap2::Status;
use virtual_fido::pin_protocol::PinProtocol;
use virtual_fido::{PresencePolicy, TokenConfig};

const MC: u8 = 0x01;
const GA: u8 = 0x02;
const INFO: u8 = 0x04;
const PIN: u8 = 0x06;
const RESET: u8 = 0x07;
const NEXT: u8 = 0x08;
const SELECTION: u8 = 0x0B;

fn st(s: Status) -> u8 {
    s as u8
}

fn with_policy(policy: PresencePolicy) -> Host {
    Host::new(TokenConfig {
        presence: policy,
        presence_timeout: Duration::from_millis(150),
        ..TokenConfig::default()
    })
}

fn make(host: &mut Host, mc: &MakeCred) -> Result<(AuthData, Value), u8> {
    let resp = host.ctap(MC, Some(mc.to_value()))?;
    let raw = bytes(get(&resp, 2).unwrap());
    Ok((parse_auth_data(&raw), resp))
}

fn ga(rp: &str, allow: &[&[u8]], extra: Vec<(i64, Value)>) -> Value {
    let mut e = vec![(1, text(rp)), (2, Value::Bytes(CDH.to_vec()))];
    if !allow.is_empty() {
        e.push((
            3,
            Value::Array(allow.iter().map(|id| descriptor(id)).collect()),
        ));
    }
    e.extend(extra);
    e.sort_by_key(|(k, _)| *k);
    map(e)
}

#[test]
fn get_info_advertises_what_is_implemented() {
    let mut host = Host::accept();
    let info = host.ctap(INFO, None).unwrap();
    let strings = |k| -> Vec<String> {
        get(&info, k)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_text().unwrap().to_string())
            .collect()
    };
    assert_eq!(strings(1), VERSIONS);
    assert_eq!(strings(2), EXTENSIONS);
    assert_eq!(
        bytes(get(&info, 3).unwrap()),
        host.token.export_state().aaguid
    );
    let opts = get(&info, 4).unwrap();
    for (k, v) in [
        ("rk", true),
        ("up", true),
        ("plat", false),
        ("clientPin", false),
        ("pinUvAuthToken", true),
        ("makeCredUvNotRqd", true),
    ] {
        assert_eq!(tget(opts, k), Some(&Value::Bool(v)), "{k}");
    }
    assert!(tget(opts, "uv").is_none(), "no built-in UV is advertised");
    let protocols: Vec<i128> = get(&info, 6)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_integer().unwrap().into())
        .collect();
    assert_eq!(protocols, [2, 1]);
    let algs: Vec<i128> = get(&info, 0x0A)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| tget(a, "alg").unwrap().as_integer().unwrap().into())
        .collect();
    assert_eq!(
        algs,
        ALGORITHMS.iter().map(|a| *a as i128).collect::<Vec<_>>()
    );
    set_pin(&mut host, PinProtocol::Two, "1234").unwrap();
    let info = host.ctap(INFO, None).unwrap();
    assert_eq!(
        tget(get(&info, 4).unwrap(), "clientPin"),
        Some(&Value::Bool(true))
    );
}

#[test]
fn make_credential_es256_with_packed_attestation_verifies() {
    let mut host = Host::accept();
    let (ad, resp) = make(&mut host, &MakeCred::default()).unwrap();
    assert_eq!(get(&resp, 1), Some(&text("packed")));
    assert_eq!(ad.rp_id_hash, rp_id_hash("example.org"));
    assert_eq!(ad.flags & 0x45, 0x41, "UP and AT set, UV clear");
    let att = get(&resp, 3).unwrap();
    assert_eq!(tget(att, "alg"), Some(&int(-7)));
    let x5c = tget(att, "x5c").unwrap().as_array().unwrap();
    assert_eq!(bytes(&x5c[0]), crypto::TEST_ATTESTATION_CERT);
    let signed = [bytes(get(&resp, 2).unwrap()), CDH.to_vec()].concat();
    let (x, y) = crypto::p256_coordinates(crypto::test_attestation_key().verifying_key());
    let att_key = virtual_fido::ctap2::cose::p256_key(&x, &y, -7);
    verify(&att_key, &signed, &bytes(tget(att, "sig").unwrap()));
}

#[test]
fn self_and_none_attestation() {
    for (mode, fmt) in [
        (AttestationMode::SelfAttestation, "packed"),
        (AttestationMode::None, "none"),
    ] {
        let mut host = Host::new(TokenConfig {
            attestation: mode,
            ..TokenConfig::default()
        });
        let (ad, resp) = make(&mut host, &MakeCred::default()).unwrap();
        assert_eq!(get(&resp, 1), Some(&text(fmt)));
        let att = get(&resp, 3).unwrap();
        if mode == AttestationMode::SelfAttestation {
            assert!(tget(att, "x5c").is_none());
            let signed = [bytes(get(&resp, 2).unwrap()), CDH.to_vec()].concat();
            verify(
                ad.public_key.as_ref().unwrap(),
                &signed,
                &bytes(tget(att, "sig").unwrap()),
            );
        } else {
            assert_eq!(att.as_map().unwrap().len(), 0);
        }
    }
}

#[test]
fn eddsa_credentials_make_and_assert() {
    let mut host = Host::accept();
    let mc = MakeCred {
        algs: vec![-8],
        ..MakeCred::default()
    };
    let (ad, _) = make(&mut host, &mc).unwrap();
    let key = ad.public_key.unwrap();
    assert_eq!(get(&key, 3), Some(&int(-8)));
    let id = ad.credential_id.unwrap();
    let resp = host
        .ctap(GA, Some(ga("example.org", &[&id], vec![])))
        .unwrap();
    let raw = bytes(get(&resp, 2).unwrap());
    verify(
        &key,
        &[raw, CDH.to_vec()].concat(),
        &bytes(get(&resp, 3).unwrap()),
    );
}

#[test]
fn make_credential_errors() {
    let mut host = Host::accept();
    let bad_alg = MakeCred {
        algs: vec![-257],
        ..MakeCred::default()
    };
    assert_eq!(
        make(&mut host, &bad_alg).unwrap_err(),
        st(Status::UnsupportedAlgorithm)
    );
    let up_false = MakeCred {
        options: vec![("up", false)],
        ..MakeCred::default()
    };
    assert_eq!(
        make(&mut host, &up_false).unwrap_err(),
        st(Status::InvalidOption)
    );
    let uv_true = MakeCred {
        options: vec![("uv", true)],
        ..MakeCred::default()
    };
    assert_eq!(
        make(&mut host, &uv_true).unwrap_err(),
        st(Status::InvalidOption)
    );
    assert_eq!(
        host.ctap(MC, Some(map(vec![(1, Value::Bytes(CDH.to_vec()))])))
            .unwrap_err(),
        st(Status::MissingParameter)
    );
    assert_eq!(
        host.ctap(MC, Some(int(1))).unwrap_err(),
        st(Status::CborUnexpectedType)
    );
    // A forged pinUvAuthParam without any token issued.
    let forged = MakeCred {
        pin_auth: Some((PinProtocol::Two, vec![0; 32])),
        ..MakeCred::default()
    };
    assert_eq!(
        make(&mut host, &forged).unwrap_err(),
        st(Status::PinAuthInvalid)
    );
    // Zero-length pinUvAuthParam: touch, then PIN_NOT_SET.
    let mut v = MakeCred::default().to_value();
    if let Value::Map(m) = &mut v {
        m.push((int(8), Value::Bytes(vec![])));
        m.push((int(9), int(1)));
    }
    assert_eq!(host.ctap(MC, Some(v)).unwrap_err(), st(Status::PinNotSet));
    // Exclude list hit.
    let (ad, _) = make(&mut host, &MakeCred::default()).unwrap();
    let excl = MakeCred {
        exclude: vec![ad.credential_id.unwrap()],
        ..MakeCred::default()
    };
    assert_eq!(
        make(&mut host, &excl).unwrap_err(),
        st(Status::CredentialExcluded)
    );
}

#[test]
fn presence_policies_map_to_status_codes() {
    let mut host = with_policy(PresencePolicy::Deny);
    assert_eq!(
        make(&mut host, &MakeCred::default()).unwrap_err(),
        st(Status::OperationDenied)
    );
    let mut host = with_policy(PresencePolicy::Timeout);
    let (cmd, data, keepalives) = host.call_counting(
        CMD_CBOR,
        &[
            &[MC][..],
            &virtual_fido::ctap2::cbor::encode(&MakeCred::default().to_value()),
        ]
        .concat(),
    );
    assert_eq!((cmd, data), (CMD_CBOR, vec![st(Status::UserActionTimeout)]));
    assert!(keepalives >= 1, "keepalives while waiting");
    let mut host = with_policy(PresencePolicy::Delay { ms: 50 });
    assert!(make(&mut host, &MakeCred::default()).is_ok());
}

#[test]
fn resident_keys_with_pin_need_a_token_and_get_uv() {
    let mut host = Host::accept();
    set_pin(&mut host, PinProtocol::Two, "1234").unwrap();
    let rk = MakeCred {
        rk: true,
        ..MakeCred::default()
    };
    assert_eq!(make(&mut host, &rk).unwrap_err(), st(Status::PuatRequired));
    // Non-resident without UV is allowed (makeCredUvNotRqd).
    let (ad, _) = make(&mut host, &MakeCred::default()).unwrap();
    assert_eq!(ad.flags & 0x04, 0);
    for protocol in [PinProtocol::One, PinProtocol::Two] {
        let token = pin_token(
            &mut host,
            protocol,
            "1234",
            Some((0x01, Some("example.org"))),
        )
        .unwrap();
        let rk = MakeCred {
            rk: true,
            pin_auth: Some((protocol, token)),
            ..MakeCred::default()
        };
        let (ad, _) = make(&mut host, &rk).unwrap();
        assert_eq!(ad.flags & 0x05, 0x05, "UP and UV");
    }
}

#[test]
fn pin_token_permissions_and_rp_binding_are_enforced() {
    let mut host = Host::accept();
    set_pin(&mut host, PinProtocol::Two, "1234").unwrap();
    let p = PinProtocol::Two;
    let ga_only = pin_token(&mut host, p, "1234", Some((0x02, None))).unwrap();
    let mc = MakeCred {
        pin_auth: Some((p, ga_only)),
        ..MakeCred::default()
    };
    assert_eq!(
        make(&mut host, &mc).unwrap_err(),
        st(Status::PinAuthInvalid)
    );
    let bound = pin_token(&mut host, p, "1234", Some((0x01, Some("other.org")))).unwrap();
    let mc = MakeCred {
        pin_auth: Some((p, bound)),
        ..MakeCred::default()
    };
    assert_eq!(
        make(&mut host, &mc).unwrap_err(),
        st(Status::PinAuthInvalid)
    );
    assert_eq!(
        pin_token(&mut host, p, "1234", Some((0x04, None))).unwrap_err(),
        st(Status::UnauthorizedPermission)
    );
    assert_eq!(
        pin_token(&mut host, p, "1234", Some((0, None))).unwrap_err(),
        st(Status::InvalidParameter)
    );
    // Legacy getPinToken grants mc+ga.
    let legacy = pin_token(&mut host, PinProtocol::One, "1234", None).unwrap();
    let mc = MakeCred {
        pin_auth: Some((PinProtocol::One, legacy)),
        ..MakeCred::default()
    };
    assert!(make(&mut host, &mc).is_ok());
}

#[test]
fn client_pin_retries_lockout_and_change() {
    let mut host = Host::accept();
    let retries = |host: &mut Host| {
        let r = host
            .ctap(PIN, Some(map(vec![(1, int(2)), (2, int(1))])))
            .unwrap();
        get(&r, 3).unwrap().as_integer().map(i128::from).unwrap()
    };
    assert_eq!(retries(&mut host), 8);
    assert_eq!(
        pin_token(&mut host, PinProtocol::Two, "1234", None).unwrap_err(),
        st(Status::PinNotSet)
    );
    assert_eq!(
        set_pin(&mut host, PinProtocol::Two, "12").unwrap_err(),
        st(Status::PinPolicyViolation)
    );
    set_pin(&mut host, PinProtocol::One, "1234").unwrap();
    assert_eq!(
        set_pin(&mut host, PinProtocol::Two, "5678").unwrap_err(),
        st(Status::NotAllowed)
    );
    // Three wrong PINs: invalid, invalid, then auth-blocked until a power cycle.
    for expected in [
        Status::PinInvalid,
        Status::PinInvalid,
        Status::PinAuthBlocked,
    ] {
        assert_eq!(
            pin_token(&mut host, PinProtocol::Two, "0000", None).unwrap_err(),
            st(expected)
        );
    }
    assert_eq!(
        pin_token(&mut host, PinProtocol::Two, "1234", None).unwrap_err(),
        st(Status::PinAuthBlocked)
    );
    assert_eq!(retries(&mut host), 5);
    host.token.with_authenticator(|a| a.power_cycle());
    assert!(pin_token(&mut host, PinProtocol::Two, "1234", None).is_ok());
    assert_eq!(retries(&mut host), 8, "a correct PIN restores the retries");
    // changePIN.
    let p = key_agreement(&mut host, PinProtocol::Two);
    let new_pin_enc = p.shared.encrypt(&padded_pin("98765"));
    let pin_hash_enc = p.shared.encrypt(&pin_hash("1234"));
    let auth = p
        .shared
        .authenticate(&[new_pin_enc.clone(), pin_hash_enc.clone()].concat());
    host.ctap(
        PIN,
        Some(map(vec![
            (1, int(2)),
            (2, int(4)),
            (3, p.cose.clone()),
            (4, Value::Bytes(auth)),
            (5, Value::Bytes(new_pin_enc)),
            (6, Value::Bytes(pin_hash_enc)),
        ])),
    )
    .unwrap();
    assert!(pin_token(&mut host, PinProtocol::Two, "98765", None).is_ok());
    // Run the retries down to zero: blocked for good (persisted).
    let mut last = 0;
    for _ in 0..8 {
        host.token.with_authenticator(|a| a.power_cycle());
        last = pin_token(&mut host, PinProtocol::Two, "0000", None).unwrap_err();
    }
    assert_eq!(last, st(Status::PinBlocked));
    assert_eq!(retries(&mut host), 0);
    assert_eq!(
        pin_token(&mut host, PinProtocol::Two, "98765", None).unwrap_err(),
        st(Status::PinBlocked)
    );
}

#[test]
fn client_pin_parameter_errors() {
    let mut host = Host::accept();
    assert_eq!(
        host.ctap(PIN, Some(map(vec![(1, int(3)), (2, int(2))])))
            .unwrap_err(),
        st(Status::InvalidParameter)
    );
    assert_eq!(
        host.ctap(PIN, Some(map(vec![(2, int(2))]))).unwrap_err(),
        st(Status::MissingParameter)
    );
    assert_eq!(
        host.ctap(PIN, Some(map(vec![(1, int(2)), (2, int(0x42))])))
            .unwrap_err(),
        st(Status::InvalidSubcommand)
    );
    assert_eq!(
        host.ctap(PIN, Some(map(vec![(1, int(2)), (2, int(3))])))
            .unwrap_err(),
        st(Status::MissingParameter)
    );
}

#[test]
fn get_assertion_with_allow_list_signs_and_counts() {
    let mut host = Host::accept();
    let (ad, _) = make(&mut host, &MakeCred::default()).unwrap();
    let id = ad.credential_id.unwrap();
    let key = ad.public_key.unwrap();
    let mut last = ad.counter;
    for _ in 0..3 {
        let resp = host
            .ctap(GA, Some(ga("example.org", &[b"unknown", &id], vec![])))
            .unwrap();
        assert_eq!(bytes(tget(get(&resp, 1).unwrap(), "id").unwrap()), id);
        let raw = bytes(get(&resp, 2).unwrap());
        let a = parse_auth_data(&raw);
        assert_eq!(a.flags, 0x01, "UP only");
        assert!(a.counter > last, "counter increases");
        last = a.counter;
        verify(
            &key,
            &[raw, CDH.to_vec()].concat(),
            &bytes(get(&resp, 3).unwrap()),
        );
        assert!(get(&resp, 5).is_none());
    }
    // Silent probe (up=false): no UP flag.
    let resp = host
        .ctap(
            GA,
            Some(ga(
                "example.org",
                &[&id],
                vec![(5, tmap(vec![("up", Value::Bool(false))]))],
            )),
        )
        .unwrap();
    assert_eq!(
        parse_auth_data(&bytes(get(&resp, 2).unwrap())).flags & 0x01,
        0
    );
    // Errors.
    assert_eq!(
        host.ctap(GA, Some(ga("other.org", &[&id], vec![])))
            .unwrap_err(),
        st(Status::NoCredentials)
    );
    assert_eq!(
        host.ctap(GA, Some(ga("example.org", &[], vec![])))
            .unwrap_err(),
        st(Status::NoCredentials)
    );
    assert_eq!(
        host.ctap(
            GA,
            Some(ga(
                "example.org",
                &[&id],
                vec![(5, tmap(vec![("uv", Value::Bool(true))]))]
            ))
        )
        .unwrap_err(),
        st(Status::InvalidOption)
    );
    let rk = ga(
        "example.org",
        &[&id],
        vec![(5, tmap(vec![("rk", Value::Bool(true))]))],
    );
    assert_eq!(
        host.ctap(GA, Some(rk)).unwrap_err(),
        st(Status::UnsupportedOption)
    );
    assert_eq!(
        host.ctap(GA, Some(map(vec![(1, text("x"))]))).unwrap_err(),
        st(Status::MissingParameter)
    );
    assert_eq!(host.ctap(NEXT, None).unwrap_err(), st(Status::NotAllowed));
    let mut deny = with_policy(PresencePolicy::Deny);
    assert_eq!(
        deny.ctap(GA, Some(ga("example.org", &[b"x"], vec![])))
            .unwrap_err(),
        st(Status::NoCredentials)
    );
}

#[test]
fn discoverable_credentials_and_get_next_assertion() {
    let mut host = Host::accept();
    let mut ids = vec![];
    for user in [b"u1".to_vec(), b"u2".to_vec()] {
        let mc = MakeCred {
            rk: true,
            user,
            ..MakeCred::default()
        };
        ids.push(make(&mut host, &mc).unwrap().0.credential_id.unwrap());
    }
    let resp = host.ctap(GA, Some(ga("example.org", &[], vec![]))).unwrap();
    assert_eq!(get(&resp, 5), Some(&int(2)));
    let first = bytes(tget(get(&resp, 1).unwrap(), "id").unwrap());
    assert_eq!(first, ids[1], "newest first");
    let user = get(&resp, 4).unwrap();
    assert_eq!(bytes(tget(user, "id").unwrap()), b"u2");
    assert!(tget(user, "name").is_none(), "no user details without UV");
    let next = host.ctap(NEXT, None).unwrap();
    assert_eq!(bytes(tget(get(&next, 1).unwrap(), "id").unwrap()), ids[0]);
    assert_eq!(host.ctap(NEXT, None).unwrap_err(), st(Status::NotAllowed));
    // Another command in between ends the sequence.
    host.ctap(GA, Some(ga("example.org", &[], vec![]))).unwrap();
    host.ctap(INFO, None).unwrap();
    assert_eq!(host.ctap(NEXT, None).unwrap_err(), st(Status::NotAllowed));
    // Re-registering the same user replaces the resident credential.
    let mc = MakeCred {
        rk: true,
        user: b"u1".to_vec(),
        ..MakeCred::default()
    };
    make(&mut host, &mc).unwrap();
    let resp = host.ctap(GA, Some(ga("example.org", &[], vec![]))).unwrap();
    assert_eq!(get(&resp, 5), Some(&int(2)));
}

#[test]
fn cred_protect_levels_hide_credentials_without_uv() {
    let mut host = Host::accept();
    set_pin(&mut host, PinProtocol::Two, "1234").unwrap();
    let mut ids = vec![];
    for level in [2, 3] {
        let token = pin_token(&mut host, PinProtocol::Two, "1234", Some((0x01, None))).unwrap();
        let mc = MakeCred {
            rk: true,
            user: vec![level as u8],
            cred_protect: Some(level),
            pin_auth: Some((PinProtocol::Two, token)),
            ..MakeCred::default()
        };
        let (ad, _) = make(&mut host, &mc).unwrap();
        assert_eq!(
            tget(ad.extensions.as_ref().unwrap(), "credProtect"),
            Some(&int(level))
        );
        ids.push(ad.credential_id.unwrap());
    }
    // Without UV: no discoverable credential; level 2 reachable by id, level 3 not.
    assert_eq!(
        host.ctap(GA, Some(ga("example.org", &[], vec![])))
            .unwrap_err(),
        st(Status::NoCredentials)
    );
    assert!(
        host.ctap(GA, Some(ga("example.org", &[&ids[0]], vec![])))
            .is_ok()
    );
    assert_eq!(
        host.ctap(GA, Some(ga("example.org", &[&ids[1]], vec![])))
            .unwrap_err(),
        st(Status::NoCredentials)
    );
    // With UV both are found.
    let token = pin_token(&mut host, PinProtocol::Two, "1234", Some((0x02, None))).unwrap();
    let auth = PinProtocol::Two.authenticate_with_key(&token, &CDH);
    let resp = host
        .ctap(
            GA,
            Some(ga(
                "example.org",
                &[],
                vec![(6, Value::Bytes(auth)), (7, int(2))],
            )),
        )
        .unwrap();
    assert_eq!(get(&resp, 5), Some(&int(2)));
    assert_eq!(
        parse_auth_data(&bytes(get(&resp, 2).unwrap())).flags & 0x05,
        0x05
    );
    assert!(
        tget(get(&resp, 4).unwrap(), "name").is_some(),
        "user details with UV"
    );
}

/// hmac-secret output for `salts` with credential `id`, optionally with a UV token.
fn hmac_output(
    host: &mut Host,
    id: &[u8],
    salts: &[u8],
    uv_token: Option<&[u8]>,
    protocol: PinProtocol,
) -> Result<Vec<u8>, u8> {
    let p = key_agreement(host, protocol);
    let salt_enc = p.shared.encrypt(salts);
    let salt_auth = p.shared.authenticate(&salt_enc);
    let mut extra = vec![(
        4,
        tmap(vec![(
            "hmac-secret",
            map(vec![
                (1, p.cose.clone()),
                (2, Value::Bytes(salt_enc)),
                (3, Value::Bytes(salt_auth)),
                (4, int(protocol.number() as i64)),
            ]),
        )]),
    )];
    if let Some(token) = uv_token {
        extra.push((
            6,
            Value::Bytes(PinProtocol::Two.authenticate_with_key(token, &CDH)),
        ));
        extra.push((7, int(2)));
    }
    let resp = host.ctap(GA, Some(ga("example.org", &[id], extra)))?;
    let ad = parse_auth_data(&bytes(get(&resp, 2).unwrap()));
    let enc = bytes(tget(ad.extensions.as_ref().unwrap(), "hmac-secret").unwrap());
    Ok(p.shared.decrypt(&enc).unwrap().to_vec())
}

#[test]
fn hmac_secret_known_answers() {
    let mut host = Host::accept();
    let mc = MakeCred {
        hmac_secret: true,
        ..MakeCred::default()
    };
    let (ad, _) = make(&mut host, &mc).unwrap();
    assert_eq!(
        tget(ad.extensions.as_ref().unwrap(), "hmac-secret"),
        Some(&Value::Bool(true))
    );
    let a = ad.credential_id.unwrap();
    let b = make(&mut host, &mc).unwrap().0.credential_id.unwrap();
    let salt = [0x42u8; 32];
    for protocol in [PinProtocol::One, PinProtocol::Two] {
        let first = hmac_output(&mut host, &a, &salt, None, protocol).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(
            first,
            hmac_output(&mut host, &a, &salt, None, protocol).unwrap(),
            "same salt, same output"
        );
        assert_ne!(
            first,
            hmac_output(&mut host, &b, &salt, None, protocol).unwrap(),
            "other credential differs"
        );
        assert_ne!(
            first,
            hmac_output(&mut host, &a, &[0x43; 32], None, protocol).unwrap(),
            "other salt differs"
        );
        let two = hmac_output(&mut host, &a, &[salt, [7; 32]].concat(), None, protocol).unwrap();
        assert_eq!(two.len(), 64);
        assert_eq!(
            two[..32],
            first[..],
            "first of two salts matches the single-salt output"
        );
    }
    // With UV the output differs (a different CredRandom).
    set_pin(&mut host, PinProtocol::Two, "1234").unwrap();
    let without = hmac_output(&mut host, &a, &salt, None, PinProtocol::Two).unwrap();
    let token = pin_token(&mut host, PinProtocol::Two, "1234", Some((0x02, None))).unwrap();
    let with = hmac_output(&mut host, &a, &salt, Some(&token), PinProtocol::Two).unwrap();
    assert_ne!(with, without, "UV and non-UV outputs differ");
    assert_eq!(
        with,
        hmac_output(&mut host, &a, &salt, Some(&token), PinProtocol::Two).unwrap()
    );
    // A bad saltAuth and a bad salt length are refused.
    let p = key_agreement(&mut host, PinProtocol::Two);
    let salt_enc = p.shared.encrypt(&salt);
    let bad = |salt_enc: Vec<u8>, salt_auth: Vec<u8>| {
        ga(
            "example.org",
            &[&a],
            vec![(
                4,
                tmap(vec![(
                    "hmac-secret",
                    map(vec![
                        (1, p.cose.clone()),
                        (2, Value::Bytes(salt_enc)),
                        (3, Value::Bytes(salt_auth)),
                        (4, int(2)),
                    ]),
                )]),
            )],
        )
    };
    assert_eq!(
        host.ctap(GA, Some(bad(salt_enc.clone(), vec![0; 32])))
            .unwrap_err(),
        st(Status::PinAuthInvalid)
    );
    let short = p.shared.encrypt(&[1u8; 16]);
    let auth = p.shared.authenticate(&short);
    assert_eq!(
        host.ctap(GA, Some(bad(short, auth))).unwrap_err(),
        st(Status::InvalidLength)
    );
}

#[test]
fn reset_and_selection() {
    let mut host = Host::accept();
    set_pin(&mut host, PinProtocol::Two, "1234").unwrap();
    make(&mut host, &MakeCred::default()).unwrap();
    let aaguid = host.token.export_state().aaguid;
    assert_eq!(host.ctap(RESET, None), Ok(Value::Null));
    let state = host.token.export_state();
    assert!(state.credentials.is_empty() && state.pin_hash.is_none());
    assert_eq!(state.aaguid, aaguid, "the model id survives a reset");
    assert_eq!(host.ctap(SELECTION, None), Ok(Value::Null));
    let mut deny = with_policy(PresencePolicy::Deny);
    assert_eq!(
        deny.ctap(RESET, None).unwrap_err(),
        st(Status::OperationDenied)
    );
    assert_eq!(
        deny.ctap(SELECTION, None).unwrap_err(),
        st(Status::OperationDenied)
    );
    let mut timeout = with_policy(PresencePolicy::Timeout);
    assert_eq!(
        timeout.ctap(SELECTION, None).unwrap_err(),
        st(Status::UserActionTimeout)
    );
    assert_eq!(
        host.ctap(0x55, None).unwrap_err(),
        st(Status::InvalidCommand)
    );
}
