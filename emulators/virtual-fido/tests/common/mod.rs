//! In-process test harness: a host talking CTAPHID to the engine, no kernel, no sockets.
#![allow(dead_code, unreachable_pub, clippy::needless_lifetimes)]

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use ciborium::Value;
use virtual_fido::crypto;
use virtual_fido::ctap2::{cbor, cose};
use virtual_fido::ctaphid::message::{Progress, Reassembler};
use virtual_fido::ctaphid::{CtapHid, EngineConfig, Packet, fragment};
use virtual_fido::pin_protocol::{PinProtocol, SharedSecret};
use virtual_fido::transport::ChannelSink;
use virtual_fido::{Token, TokenConfig};

pub const CMD_PING: u8 = 0x01;
pub const CMD_MSG: u8 = 0x03;
pub const CMD_LOCK: u8 = 0x04;
pub const CMD_INIT: u8 = 0x06;
pub const CMD_WINK: u8 = 0x08;
pub const CMD_CBOR: u8 = 0x10;
pub const CMD_CANCEL: u8 = 0x11;
pub const CMD_KEEPALIVE: u8 = 0x3B;
pub const CMD_ERROR: u8 = 0x3F;

pub struct Host {
    pub hid: CtapHid,
    pub rx: Receiver<[u8; 64]>,
    pub token: Arc<Token>,
    pub cid: u32,
}

impl Host {
    pub fn new(config: TokenConfig) -> Self {
        Self::with_token(Token::in_memory(config))
    }

    pub fn accept() -> Self {
        Self::new(TokenConfig::default())
    }

    pub fn with_token(token: Arc<Token>) -> Self {
        let (sink, rx) = ChannelSink::new();
        let engine = EngineConfig {
            keepalive_interval: Duration::from_millis(10),
            ..EngineConfig::default()
        };
        let hid = CtapHid::new(token.clone(), Arc::new(sink), engine);
        let mut host = Self {
            hid,
            rx,
            token,
            cid: 0,
        };
        host.cid = host.init();
        host
    }

    /// Allocates a channel with INIT on the broadcast channel.
    pub fn init(&mut self) -> u32 {
        let nonce = [1, 2, 3, 4, 5, 6, 7, 8];
        self.send(0xFFFF_FFFF, CMD_INIT, &nonce);
        let (cid, cmd, payload) = self.recv();
        assert_eq!((cid, cmd), (0xFFFF_FFFF, CMD_INIT));
        assert_eq!(&payload[..8], &nonce);
        u32::from_be_bytes(payload[8..12].try_into().unwrap())
    }

    pub fn send(&mut self, cid: u32, cmd: u8, payload: &[u8]) {
        for report in fragment(cid, cmd, payload) {
            self.hid
                .on_out_report_at(&report, std::time::Instant::now());
        }
    }

    /// The next complete message from the device (keepalives included).
    pub fn recv(&mut self) -> (u32, u8, Vec<u8>) {
        self.try_recv(Duration::from_secs(10))
            .expect("the device answered")
    }

    pub fn try_recv(&mut self, timeout: Duration) -> Option<(u32, u8, Vec<u8>)> {
        let first = self.rx.recv_timeout(timeout).ok()?;
        let Packet::Init {
            cid,
            cmd,
            bcnt,
            data,
        } = Packet::parse(&first)
        else {
            panic!("device sent a continuation packet first");
        };
        let (mut r, mut progress) = Reassembler::start(cid, cmd, bcnt, &data).unwrap();
        loop {
            if let Progress::Complete { cmd, payload } = progress {
                return Some((cid, cmd, payload));
            }
            let next = self.rx.recv_timeout(timeout).ok()?;
            let Packet::Cont { seq, data, .. } = Packet::parse(&next) else {
                panic!("init packet inside a message");
            };
            progress = r.push(seq, &data).unwrap();
        }
    }

    /// Sends on our channel and returns the final reply, counting keepalives.
    pub fn call_counting(&mut self, cmd: u8, payload: &[u8]) -> (u8, Vec<u8>, usize) {
        self.send(self.cid, cmd, payload);
        let mut keepalives = 0;
        loop {
            let (cid, rcmd, data) = self.recv();
            assert_eq!(cid, self.cid);
            if rcmd == CMD_KEEPALIVE {
                assert_eq!(data, [0x02], "keepalive status UPNEEDED");
                keepalives += 1;
                continue;
            }
            return (rcmd, data, keepalives);
        }
    }

    pub fn call(&mut self, cmd: u8, payload: &[u8]) -> (u8, Vec<u8>) {
        let (c, d, _) = self.call_counting(cmd, payload);
        (c, d)
    }

    /// A CTAP2 request; `Ok(map or Null)` on success, `Err(status)` otherwise.
    pub fn ctap(&mut self, command: u8, params: Option<Value>) -> Result<Value, u8> {
        let mut payload = vec![command];
        if let Some(p) = params {
            payload.extend(cbor::encode(&p));
        }
        let (cmd, data) = self.call(CMD_CBOR, &payload);
        assert_eq!(cmd, CMD_CBOR, "reply {data:?}");
        match data.split_first() {
            Some((0, [])) => Ok(Value::Null),
            Some((0, rest)) => Ok(cbor::decode(rest).expect("valid CBOR response")),
            Some((status, _)) => Err(*status),
            None => panic!("empty CBOR response"),
        }
    }

    /// A U2F APDU; returns (data, status word).
    pub fn apdu(&mut self, apdu: &[u8]) -> (Vec<u8>, u16) {
        let (cmd, mut data) = self.call(CMD_MSG, apdu);
        assert_eq!(cmd, CMD_MSG);
        let sw = data.split_off(data.len() - 2);
        (data, u16::from_be_bytes([sw[0], sw[1]]))
    }
}

// ---- CBOR helpers ----

pub fn map(entries: Vec<(i64, Value)>) -> Value {
    cbor::int_map(entries)
}

pub fn tmap(entries: Vec<(&str, Value)>) -> Value {
    cbor::text_map(entries)
}

pub fn get<'a>(value: &'a Value, key: i64) -> Option<&'a Value> {
    cbor::Map::from_value(value).ok()?.int(key)
}

pub fn tget<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    cbor::Map::from_value(value).ok()?.text(key)
}

pub fn bytes(v: &Value) -> Vec<u8> {
    v.as_bytes().unwrap().clone()
}

pub fn int(v: i64) -> Value {
    Value::Integer(v.into())
}

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

pub fn descriptor(id: &[u8]) -> Value {
    tmap(vec![
        ("id", Value::Bytes(id.to_vec())),
        ("type", text("public-key")),
    ])
}

pub const CDH: [u8; 32] = [0xCD; 32];

pub struct MakeCred {
    pub rp: &'static str,
    pub user: Vec<u8>,
    pub algs: Vec<i64>,
    pub rk: bool,
    pub hmac_secret: bool,
    pub cred_protect: Option<i64>,
    pub exclude: Vec<Vec<u8>>,
    pub pin_auth: Option<(PinProtocol, Vec<u8>)>,
    pub options: Vec<(&'static str, bool)>,
}

impl Default for MakeCred {
    fn default() -> Self {
        Self {
            rp: "example.org",
            user: b"user-1".to_vec(),
            algs: vec![-7],
            rk: false,
            hmac_secret: false,
            cred_protect: None,
            exclude: vec![],
            pin_auth: None,
            options: vec![],
        }
    }
}

impl MakeCred {
    pub fn to_value(&self) -> Value {
        let mut e = vec![
            (1, Value::Bytes(CDH.to_vec())),
            (
                2,
                tmap(vec![("id", text(self.rp)), ("name", text("Example"))]),
            ),
            (
                3,
                tmap(vec![
                    ("id", Value::Bytes(self.user.clone())),
                    ("name", text("alice")),
                    ("displayName", text("Alice")),
                ]),
            ),
            (
                4,
                Value::Array(
                    self.algs
                        .iter()
                        .map(|a| tmap(vec![("alg", int(*a)), ("type", text("public-key"))]))
                        .collect(),
                ),
            ),
        ];
        if !self.exclude.is_empty() {
            e.push((
                5,
                Value::Array(self.exclude.iter().map(|id| descriptor(id)).collect()),
            ));
        }
        let mut ext = vec![];
        if self.hmac_secret {
            ext.push(("hmac-secret", Value::Bool(true)));
        }
        if let Some(l) = self.cred_protect {
            ext.push(("credProtect", int(l)));
        }
        if !ext.is_empty() {
            e.push((6, tmap(ext)));
        }
        let mut opts: Vec<(&str, Value)> = self
            .options
            .iter()
            .map(|(k, v)| (*k, Value::Bool(*v)))
            .collect();
        if self.rk {
            opts.push(("rk", Value::Bool(true)));
        }
        if !opts.is_empty() {
            e.push((7, tmap(opts)));
        }
        if let Some((protocol, token)) = &self.pin_auth {
            e.push((8, Value::Bytes(protocol.authenticate_with_key(token, &CDH))));
            e.push((9, int(protocol.number() as i64)));
        }
        map(e)
    }
}

/// Parsed authenticator data.
#[derive(Debug)]
pub struct AuthData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub counter: u32,
    pub credential_id: Option<Vec<u8>>,
    pub public_key: Option<Value>,
    pub extensions: Option<Value>,
}

pub fn parse_auth_data(raw: &[u8]) -> AuthData {
    let flags = raw[32];
    let counter = u32::from_be_bytes(raw[33..37].try_into().unwrap());
    let mut rest = &raw[37..];
    let (mut credential_id, mut public_key, mut extensions) = (None, None, None);
    if flags & 0x40 != 0 {
        let len = u16::from_be_bytes([rest[16], rest[17]]) as usize;
        credential_id = Some(rest[18..18 + len].to_vec());
        rest = &rest[18 + len..];
        let v: Value = ciborium::from_reader(&mut rest).unwrap();
        public_key = Some(v);
    }
    if flags & 0x80 != 0 {
        let v: Value = ciborium::from_reader(&mut rest).unwrap();
        extensions = Some(v);
    }
    assert!(rest.is_empty(), "trailing bytes in authData");
    AuthData {
        rp_id_hash: raw[..32].try_into().unwrap(),
        flags,
        counter,
        credential_id,
        public_key,
        extensions,
    }
}

/// Verifies a signature with a COSE public key (ES256 or EdDSA).
pub fn verify(cose_key: &Value, message: &[u8], signature: &[u8]) {
    use p256::ecdsa::signature::Verifier;
    match get(cose_key, 3)
        .and_then(|v| v.as_integer())
        .map(i128::from)
    {
        Some(-7) => {
            let (x, y) = cose::parse_p256_key(cose_key).unwrap();
            let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
            let sig = p256::ecdsa::Signature::from_der(signature).unwrap();
            key.verify(message, &sig).expect("ES256 signature verifies");
        }
        Some(-8) => {
            let x: [u8; 32] = bytes(get(cose_key, -2).unwrap()).try_into().unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
            let sig = ed25519_dalek::Signature::from_slice(signature).unwrap();
            key.verify_strict(message, &sig)
                .expect("EdDSA signature verifies");
        }
        other => panic!("unexpected alg {other:?}"),
    }
}

// ---- platform side of the PIN protocols ----

pub struct Platform {
    pub protocol: PinProtocol,
    pub cose: Value,
    pub shared: SharedSecret,
}

pub fn key_agreement(host: &mut Host, protocol: PinProtocol) -> Platform {
    let resp = host
        .ctap(
            0x06,
            Some(map(vec![(1, int(protocol.number() as i64)), (2, int(2))])),
        )
        .expect("getKeyAgreement");
    let auth_key = get(&resp, 1).unwrap().clone();
    let secret = p256::SecretKey::from_slice(&crypto::random::<32>()).unwrap();
    let shared = SharedSecret::platform_side(protocol, &secret, &auth_key).unwrap();
    let public = p256::ecdsa::VerifyingKey::from(secret.public_key());
    let (x, y) = crypto::p256_coordinates(&public);
    Platform {
        protocol,
        cose: cose::p256_key(&x, &y, cose::ECDH_ES_HKDF_256),
        shared,
    }
}

pub fn padded_pin(pin: &str) -> Vec<u8> {
    let mut p = pin.as_bytes().to_vec();
    p.resize(64, 0);
    p
}

pub fn pin_hash(pin: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(pin.as_bytes())[..16].to_vec()
}

pub fn set_pin(host: &mut Host, protocol: PinProtocol, pin: &str) -> Result<Value, u8> {
    let p = key_agreement(host, protocol);
    let new_pin_enc = p.shared.encrypt(&padded_pin(pin));
    let auth = p.shared.authenticate(&new_pin_enc);
    host.ctap(
        0x06,
        Some(map(vec![
            (1, int(protocol.number() as i64)),
            (2, int(3)),
            (3, p.cose.clone()),
            (4, Value::Bytes(auth)),
            (5, Value::Bytes(new_pin_enc)),
        ])),
    )
}

/// getPinUvAuthTokenUsingPinWithPermissions (or getPinToken when `permissions` is None).
pub fn pin_token(
    host: &mut Host,
    protocol: PinProtocol,
    pin: &str,
    permissions: Option<(u64, Option<&str>)>,
) -> Result<Vec<u8>, u8> {
    let p = key_agreement(host, protocol);
    let pin_hash_enc = p.shared.encrypt(&pin_hash(pin));
    let mut e = vec![
        (1, int(protocol.number() as i64)),
        (2, int(if permissions.is_some() { 9 } else { 5 })),
        (3, p.cose.clone()),
        (6, Value::Bytes(pin_hash_enc)),
    ];
    if let Some((perm, rp)) = permissions {
        e.push((9, int(perm as i64)));
        if let Some(rp) = rp {
            e.push((10, text(rp)));
        }
    }
    let resp = host.ctap(0x06, Some(map(e)))?;
    let enc = bytes(get(&resp, 2).unwrap());
    Ok(p.shared.decrypt(&enc).unwrap().to_vec())
}
