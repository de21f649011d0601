//! CTAP1/U2F APDUs, and the control protocol over the raw socket (plug, clone, counter).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use daemon_kit::ControlHandler;
use p256::ecdsa::signature::Verifier;
use serde_json::json;
use virtual_fido::control::{Control, ControlRequest};
use virtual_fido::ctaphid::{EngineConfig, fragment};
use virtual_fido::state::DirStore;
use virtual_fido::transport::raw_socket::RawSocketServer;
use virtual_fido::{PresencePolicy, Token, TokenConfig};

fn register(host: &mut Host, app: [u8; 32]) -> (Vec<u8>, u16) {
    let mut apdu = vec![0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 64];
    apdu.extend([0x11; 32]);
    apdu.extend(app);
    apdu.extend([0x00, 0x00]);
    host.apdu(&apdu)
}

fn authenticate(host: &mut Host, p1: u8, app: [u8; 32], handle: &[u8]) -> (Vec<u8>, u16) {
    let mut data = vec![0x22; 32];
    data.extend(app);
    data.push(handle.len() as u8);
    data.extend(handle);
    let mut apdu = vec![0x00, 0x02, p1, 0x00, data.len() as u8];
    apdu.extend(data);
    host.apdu(&apdu)
}

#[test]
fn u2f_version_register_authenticate_and_errors() {
    let mut host = Host::accept();
    assert_eq!(host.apdu(&[0, 3, 0, 0]), (b"U2F_V2".to_vec(), 0x9000));
    assert_eq!(
        host.apdu(&[0, 3, 0, 0, 0, 0, 0]),
        (b"U2F_V2".to_vec(), 0x9000)
    );
    let app = [0xAA; 32];
    let (reg, sw) = register(&mut host, app);
    assert_eq!(sw, 0x9000);
    assert_eq!(reg[0], 0x05);
    let public = &reg[1..66];
    let handle = reg[67..67 + usize::from(reg[66])].to_vec();
    // The attestation signature verifies with the certificate's key.
    let cert = virtual_fido::crypto::TEST_ATTESTATION_CERT;
    let rest = &reg[67 + handle.len()..];
    assert_eq!(&rest[..cert.len()], cert);
    let sig = p256::ecdsa::Signature::from_der(&rest[cert.len()..]).unwrap();
    let signed = [&[0u8][..], &app, &[0x11; 32], &handle, public].concat();
    virtual_fido::crypto::test_attestation_key()
        .verifying_key()
        .verify(&signed, &sig)
        .unwrap();
    // Authenticate: signature over app | flags | counter | challenge.
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public).unwrap();
    let (resp, sw) = authenticate(&mut host, 0x03, app, &handle);
    assert_eq!(sw, 0x9000);
    assert_eq!(resp[0], 0x01, "user present");
    let signed = [&app[..], &resp[..5], &[0x22; 32]].concat();
    key.verify(
        &signed,
        &p256::ecdsa::Signature::from_der(&resp[5..]).unwrap(),
    )
    .unwrap();
    let (resp2, _) = authenticate(&mut host, 0x08, app, &handle);
    assert_eq!(resp2[0], 0x00, "dont-enforce: no presence flag");
    assert!(resp2[1..5] > resp[1..5], "counter increases");
    // Check-only, unknown handle, wrong app, bad lengths, bad CLA/INS.
    assert_eq!(authenticate(&mut host, 0x07, app, &handle).1, 0x6985);
    assert_eq!(authenticate(&mut host, 0x07, app, &[1, 2, 3]).1, 0x6A80);
    assert_eq!(authenticate(&mut host, 0x03, [0xBB; 32], &handle).1, 0x6A80);
    assert_eq!(host.apdu(&[0, 1, 0, 0, 2, 1, 2]).1, 0x6700);
    assert_eq!(host.apdu(&[0, 1, 0]).1, 0x6700);
    assert_eq!(host.apdu(&[0x80, 3, 0, 0]).1, 0x6E00);
    assert_eq!(host.apdu(&[0, 0x40, 0, 0]).1, 0x6D00);
    // Presence: deny refuses, wait-for-touch needs a touch (U2F never blocks).
    host.token.presence().set_policy(PresencePolicy::Deny);
    assert_eq!(register(&mut host, app).1, 0x6985);
    assert_eq!(authenticate(&mut host, 0x03, app, &handle).1, 0x6985);
    host.token
        .presence()
        .set_policy(PresencePolicy::WaitForTouch);
    assert_eq!(authenticate(&mut host, 0x03, app, &handle).1, 0x6985);
    host.token.presence().touch();
    assert_eq!(authenticate(&mut host, 0x03, app, &handle).1, 0x9000);
    // A U2F credential is usable from CTAP2 when the application is the RP id's hash.
    host.token.presence().set_policy(PresencePolicy::Accept);
    let app = virtual_fido::authenticator::rp_id_hash("example.org");
    let (reg, _) = register(&mut host, app);
    let handle = reg[67..67 + usize::from(reg[66])].to_vec();
    let request = map(vec![
        (1, text("example.org")),
        (2, ciborium::Value::Bytes(CDH.to_vec())),
        (3, ciborium::Value::Array(vec![descriptor(&handle)])),
    ]);
    let resp = host.ctap(0x02, Some(request)).unwrap();
    assert_eq!(bytes(tget(get(&resp, 1).unwrap(), "id").unwrap()), handle);
}

fn handle(token: &Arc<Token>, request: serde_json::Value) -> Result<serde_json::Value, String> {
    let request: ControlRequest = serde_json::from_value(request).map_err(|e| e.to_string())?;
    Control(token.clone()).handle(request)
}

fn raw_ping(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&fragment(0xFFFF_FFFF, 0x06, &[5; 8])[0])?;
    let mut reply = [0u8; 64];
    s.read_exact(&mut reply)?;
    Ok(reply.to_vec())
}

#[test]
fn control_protocol_plug_presence_counter_and_clone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(daemon_kit::StateDir::open(tmp.path().join("a")).unwrap());
    let token = Token::open(Box::new(store), TokenConfig::default()).unwrap();
    let path = tmp.path().join("raw.sock");
    RawSocketServer::bind(&path, token.clone(), EngineConfig::default())
        .unwrap()
        .spawn();
    let reply = raw_ping(&path).unwrap();
    assert_eq!(&reply[..5], &[0xFF, 0xFF, 0xFF, 0xFF, 0x86]);

    let status = handle(&token, json!({"cmd": "status"})).unwrap();
    assert_eq!(status["plugged"], true);
    assert_eq!(status["presence"], json!({"policy": "accept"}));

    // Unplugged: new connections are closed at once.
    handle(&token, json!({"cmd": "unplug"})).unwrap();
    assert!(raw_ping(&path).is_err());
    handle(&token, json!({"cmd": "plug"})).unwrap();
    assert!(raw_ping(&path).is_ok());

    let s = handle(
        &token,
        json!({"cmd": "presence", "policy": "delay", "ms": 5}),
    )
    .unwrap();
    assert_eq!(s["presence"], json!({"policy": "delay", "ms": 5}));
    let s = handle(
        &token,
        json!({"cmd": "presence", "policy": "wait-for-touch"}),
    )
    .unwrap();
    assert_eq!(s["presence"], json!({"policy": "wait-for-touch"}));
    let s = handle(&token, json!({"cmd": "touch"})).unwrap();
    assert_eq!(s["touch_pending"], true);
    handle(&token, json!({"cmd": "presence", "policy": "accept"})).unwrap();
    let s = handle(&token, json!({"cmd": "fault", "fault": "stall"})).unwrap();
    assert_eq!(s["faults"], json!(["stall"]));
    let s = handle(&token, json!({"cmd": "clear-faults"})).unwrap();
    assert_eq!(s["faults"], json!([]));
    assert!(handle(&token, json!({"cmd": "presence", "policy": "sometimes"})).is_err());
    assert!(handle(&token, json!({"cmd": "fly"})).is_err());

    // Make a credential, then clone the token through export/import.
    let mut host = Host::with_token(token.clone());
    let resp = host
        .ctap(0x01, Some(MakeCred::default().to_value()))
        .unwrap();
    let id = parse_auth_data(&bytes(get(&resp, 2).unwrap()))
        .credential_id
        .unwrap();
    let exported = handle(&token, json!({"cmd": "export-state"})).unwrap();
    let clone = Token::in_memory(TokenConfig::default());
    handle(&clone, json!({"cmd": "import-state", "state": exported})).unwrap();
    let request = map(vec![
        (1, text("example.org")),
        (2, ciborium::Value::Bytes(CDH.to_vec())),
        (3, ciborium::Value::Array(vec![descriptor(&id)])),
    ]);
    let counter = |host: &mut Host| {
        let resp = host.ctap(0x02, Some(request.clone())).unwrap();
        parse_auth_data(&bytes(get(&resp, 2).unwrap())).counter
    };
    let mut clone_host = Host::with_token(clone.clone());
    let original = counter(&mut host);
    let cloned = counter(&mut clone_host);
    assert_eq!(original, cloned, "a clone continues from the same counter");

    let s = handle(&token, json!({"cmd": "set-counter", "value": 1000})).unwrap();
    assert_eq!(s["counter"], 1000);
    assert_eq!(counter(&mut host), 1001);
    // The state file on disk follows (atomic replacement, version 1).
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("a/token.json")).unwrap()).unwrap();
    assert_eq!(on_disk["counter"], 1001);
    assert_eq!(on_disk["version"], 1);
    assert!(
        handle(
            &token,
            json!({"cmd": "import-state", "state": {"version": 9}})
        )
        .is_err()
    );
}

#[test]
fn copying_the_state_file_clones_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let open = |dir: &str| {
        let store = DirStore(daemon_kit::StateDir::open(tmp.path().join(dir)).unwrap());
        Token::open(Box::new(store), TokenConfig::default()).unwrap()
    };
    let original = open("original");
    let mut host = Host::with_token(original.clone());
    let resp = host
        .ctap(0x01, Some(MakeCred::default().to_value()))
        .unwrap();
    let ad = parse_auth_data(&bytes(get(&resp, 2).unwrap()));
    let (id, key) = (ad.credential_id.unwrap(), ad.public_key.unwrap());
    std::fs::create_dir_all(tmp.path().join("clone")).unwrap();
    std::fs::copy(
        tmp.path().join("original/token.json"),
        tmp.path().join("clone/token.json"),
    )
    .unwrap();
    let mut clone = Host::with_token(open("clone"));
    let request = map(vec![
        (1, text("example.org")),
        (2, ciborium::Value::Bytes(CDH.to_vec())),
        (3, ciborium::Value::Array(vec![descriptor(&id)])),
    ]);
    let resp = clone.ctap(0x02, Some(request)).unwrap();
    let raw = bytes(get(&resp, 2).unwrap());
    // The clone signs for the original's credential, verifiable with the registered key, and
    // continues the original's counter.
    verify(
        &key,
        &[raw.clone(), CDH.to_vec()].concat(),
        &bytes(get(&resp, 3).unwrap()),
    );
    assert_eq!(parse_auth_data(&raw).counter, ad.counter + 1);
    assert_eq!(
        clone.token.export_state().aaguid,
        original.export_state().aaguid
    );
}
