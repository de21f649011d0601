//! CTAP2 requests, parsed from `command byte || CBOR map`. Parsing is total: any input gives a
//! request or a [`Status`], never a panic.

use ciborium::Value;

use super::Status;
use super::cbor::{self, Map};
use super::command;

/// A parsed CTAP2 request.
#[derive(Debug, Clone)]
pub enum Request {
    /// authenticatorMakeCredential.
    MakeCredential(Box<MakeCredentialRequest>),
    /// authenticatorGetAssertion.
    GetAssertion(Box<GetAssertionRequest>),
    /// authenticatorGetInfo.
    GetInfo,
    /// authenticatorClientPIN.
    ClientPin(Box<ClientPinRequest>),
    /// authenticatorReset.
    Reset,
    /// authenticatorGetNextAssertion.
    GetNextAssertion,
    /// authenticatorSelection.
    Selection,
}

/// The `options` map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Resident (discoverable) key.
    pub rk: Option<bool>,
    /// User presence.
    pub up: Option<bool>,
    /// Built-in user verification.
    pub uv: Option<bool>,
}

/// A `PublicKeyCredentialDescriptor` of type `public-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialDescriptor {
    /// Credential id.
    pub id: Vec<u8>,
}

/// authenticatorMakeCredential parameters.
#[derive(Debug, Clone, Default)]
pub struct MakeCredentialRequest {
    /// 0x01 clientDataHash.
    pub client_data_hash: Vec<u8>,
    /// 0x02 rp.id.
    pub rp_id: String,
    /// 0x03 user.id.
    pub user_id: Vec<u8>,
    /// 0x03 user.name.
    pub user_name: Option<String>,
    /// 0x03 user.displayName.
    pub user_display_name: Option<String>,
    /// 0x04 algorithms of `public-key` entries, in preference order.
    pub algorithms: Vec<i64>,
    /// 0x05 excludeList.
    pub exclude_list: Vec<CredentialDescriptor>,
    /// 0x06 extension `hmac-secret: true`.
    pub hmac_secret: bool,
    /// 0x06 extension `credProtect`.
    pub cred_protect: Option<u64>,
    /// 0x07 options.
    pub options: Options,
    /// 0x08 pinUvAuthParam.
    pub pin_uv_auth_param: Option<Vec<u8>>,
    /// 0x09 pinUvAuthProtocol.
    pub pin_uv_auth_protocol: Option<u64>,
    /// 0x0A enterpriseAttestation.
    pub enterprise_attestation: Option<u64>,
}

/// The `hmac-secret` input of getAssertion.
#[derive(Debug, Clone)]
pub struct HmacSecretInput {
    /// 0x01 the platform's key agreement key.
    pub key_agreement: Value,
    /// 0x02 encrypted salts.
    pub salt_enc: Vec<u8>,
    /// 0x03 authentication of `salt_enc`.
    pub salt_auth: Vec<u8>,
    /// 0x04 PIN/UV protocol (default 1).
    pub pin_uv_auth_protocol: Option<u64>,
}

/// authenticatorGetAssertion parameters.
#[derive(Debug, Clone, Default)]
pub struct GetAssertionRequest {
    /// 0x01 rpId.
    pub rp_id: String,
    /// 0x02 clientDataHash.
    pub client_data_hash: Vec<u8>,
    /// 0x03 allowList.
    pub allow_list: Vec<CredentialDescriptor>,
    /// 0x04 extension `hmac-secret`.
    pub hmac_secret: Option<HmacSecretInput>,
    /// 0x05 options.
    pub options: Options,
    /// 0x06 pinUvAuthParam.
    pub pin_uv_auth_param: Option<Vec<u8>>,
    /// 0x07 pinUvAuthProtocol.
    pub pin_uv_auth_protocol: Option<u64>,
}

/// authenticatorClientPIN parameters.
#[derive(Debug, Clone, Default)]
pub struct ClientPinRequest {
    /// 0x01 pinUvAuthProtocol.
    pub pin_uv_auth_protocol: Option<u64>,
    /// 0x02 subCommand.
    pub sub_command: u64,
    /// 0x03 keyAgreement (COSE).
    pub key_agreement: Option<Value>,
    /// 0x04 pinUvAuthParam.
    pub pin_uv_auth_param: Option<Vec<u8>>,
    /// 0x05 newPinEnc.
    pub new_pin_enc: Option<Vec<u8>>,
    /// 0x06 pinHashEnc.
    pub pin_hash_enc: Option<Vec<u8>>,
    /// 0x09 permissions.
    pub permissions: Option<u64>,
    /// 0x0A rpId.
    pub rp_id: Option<String>,
}

impl Request {
    /// Parses a CBOR-command payload (command byte first).
    pub fn parse(payload: &[u8]) -> Result<Self, Status> {
        let (&cmd, body) = payload.split_first().ok_or(Status::InvalidLength)?;
        let params = || -> Result<Value, Status> {
            if body.is_empty() {
                return Err(Status::MissingParameter);
            }
            cbor::decode(body)
        };
        Ok(match cmd {
            command::GET_INFO => Request::GetInfo,
            command::RESET => Request::Reset,
            command::GET_NEXT_ASSERTION => Request::GetNextAssertion,
            command::SELECTION => Request::Selection,
            command::MAKE_CREDENTIAL => {
                Request::MakeCredential(Box::new(parse_make_credential(&params()?)?))
            }
            command::GET_ASSERTION => {
                Request::GetAssertion(Box::new(parse_get_assertion(&params()?)?))
            }
            command::CLIENT_PIN => Request::ClientPin(Box::new(parse_client_pin(&params()?)?)),
            _ => return Err(Status::InvalidCommand),
        })
    }
}

fn required<'a>(map: Map<'a>, key: i64) -> Result<&'a Value, Status> {
    map.int(key).ok_or(Status::MissingParameter)
}

fn opt<T>(
    map: Map<'_>,
    key: i64,
    f: impl FnOnce(&Value) -> Result<T, Status>,
) -> Result<Option<T>, Status> {
    map.int(key).map(f).transpose()
}

fn parse_options(value: Option<&Value>) -> Result<Options, Status> {
    let Some(value) = value else {
        return Ok(Options::default());
    };
    let map = Map::from_value(value)?;
    let flag = |k: &str| map.text(k).map(cbor::boolean).transpose();
    Ok(Options {
        rk: flag("rk")?,
        up: flag("up")?,
        uv: flag("uv")?,
    })
}

fn parse_descriptors(value: Option<&Value>) -> Result<Vec<CredentialDescriptor>, Status> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in cbor::array(value)? {
        let map = Map::from_value(item)?;
        let kind = cbor::text(map.text("type").ok_or(Status::MissingParameter)?)?;
        let id = cbor::bytes(map.text("id").ok_or(Status::MissingParameter)?)?;
        if kind == "public-key" {
            out.push(CredentialDescriptor { id });
        }
    }
    Ok(out)
}

fn parse_make_credential(value: &Value) -> Result<MakeCredentialRequest, Status> {
    let map = Map::from_value(value)?;
    let client_data_hash = cbor::bytes(required(map, 1)?)?;
    let rp = Map::from_value(required(map, 2)?)?;
    let rp_id = cbor::text(rp.text("id").ok_or(Status::MissingParameter)?)?;
    let user = Map::from_value(required(map, 3)?)?;
    let user_id = cbor::bytes(user.text("id").ok_or(Status::MissingParameter)?)?;
    if user_id.len() > 64 {
        return Err(Status::InvalidLength);
    }
    let user_name = user.text("name").map(cbor::text).transpose()?;
    let user_display_name = user.text("displayName").map(cbor::text).transpose()?;
    let mut algorithms = Vec::new();
    for item in cbor::array(required(map, 4)?)? {
        let param = Map::from_value(item)?;
        let kind = cbor::text(param.text("type").ok_or(Status::MissingParameter)?)?;
        let alg = cbor::int(param.text("alg").ok_or(Status::MissingParameter)?)?;
        if kind == "public-key" {
            algorithms.push(alg);
        }
    }
    let exclude_list = parse_descriptors(map.int(5))?;
    let (mut hmac_secret, mut cred_protect) = (false, None);
    if let Some(ext) = map.int(6) {
        let ext = Map::from_value(ext)?;
        hmac_secret = ext
            .text("hmac-secret")
            .map(cbor::boolean)
            .transpose()?
            .unwrap_or(false);
        cred_protect = ext.text("credProtect").map(cbor::uint).transpose()?;
    }
    Ok(MakeCredentialRequest {
        client_data_hash,
        rp_id,
        user_id,
        user_name,
        user_display_name,
        algorithms,
        exclude_list,
        hmac_secret,
        cred_protect,
        options: parse_options(map.int(7))?,
        pin_uv_auth_param: opt(map, 8, cbor::bytes)?,
        pin_uv_auth_protocol: opt(map, 9, cbor::uint)?,
        enterprise_attestation: opt(map, 0x0A, cbor::uint)?,
    })
}

fn parse_get_assertion(value: &Value) -> Result<GetAssertionRequest, Status> {
    let map = Map::from_value(value)?;
    let rp_id = cbor::text(required(map, 1)?)?;
    let client_data_hash = cbor::bytes(required(map, 2)?)?;
    let allow_list = parse_descriptors(map.int(3))?;
    let mut hmac_secret = None;
    if let Some(ext) = map.int(4) {
        let ext = Map::from_value(ext)?;
        if let Some(hs) = ext.text("hmac-secret") {
            let hs = Map::from_value(hs)?;
            hmac_secret = Some(HmacSecretInput {
                key_agreement: required(hs, 1)?.clone(),
                salt_enc: cbor::bytes(required(hs, 2)?)?,
                salt_auth: cbor::bytes(required(hs, 3)?)?,
                pin_uv_auth_protocol: opt(hs, 4, cbor::uint)?,
            });
        }
    }
    Ok(GetAssertionRequest {
        rp_id,
        client_data_hash,
        allow_list,
        hmac_secret,
        options: parse_options(map.int(5))?,
        pin_uv_auth_param: opt(map, 6, cbor::bytes)?,
        pin_uv_auth_protocol: opt(map, 7, cbor::uint)?,
    })
}

fn parse_client_pin(value: &Value) -> Result<ClientPinRequest, Status> {
    let map = Map::from_value(value)?;
    Ok(ClientPinRequest {
        pin_uv_auth_protocol: opt(map, 1, cbor::uint)?,
        sub_command: cbor::uint(required(map, 2)?)?,
        key_agreement: map.int(3).cloned(),
        pin_uv_auth_param: opt(map, 4, cbor::bytes)?,
        new_pin_enc: opt(map, 5, cbor::bytes)?,
        pin_hash_enc: opt(map, 6, cbor::bytes)?,
        permissions: opt(map, 9, cbor::uint)?,
        rp_id: opt(map, 0x0A, cbor::text)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_without_parameters_parse() {
        assert!(matches!(Request::parse(&[0x04]), Ok(Request::GetInfo)));
        assert!(matches!(Request::parse(&[0x07]), Ok(Request::Reset)));
        assert!(matches!(
            Request::parse(&[0x08]),
            Ok(Request::GetNextAssertion)
        ));
        assert!(matches!(Request::parse(&[0x0B]), Ok(Request::Selection)));
        assert_eq!(Request::parse(&[]).unwrap_err(), Status::InvalidLength);
        assert_eq!(Request::parse(&[0x55]).unwrap_err(), Status::InvalidCommand);
        assert_eq!(
            Request::parse(&[0x01]).unwrap_err(),
            Status::MissingParameter
        );
        assert_eq!(
            Request::parse(&[0x01, 0xFF]).unwrap_err(),
            Status::InvalidCbor
        );
        assert_eq!(
            Request::parse(&[0x02, 0x01]).unwrap_err(),
            Status::CborUnexpectedType
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| Value::Integer(i.into())),
            any::<bool>().prop_map(Value::Bool),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            "[a-zA-Z-]{0,12}".prop_map(Value::Text),
            Just(Value::Null),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            (-4i64..12).prop_map(|i| Value::Integer(i.into())),
                            prop_oneof![
                                Just("id"),
                                Just("type"),
                                Just("alg"),
                                Just("rk"),
                                Just("up"),
                                Just("uv"),
                                Just("hmac-secret"),
                                Just("credProtect"),
                                Just("name")
                            ]
                            .prop_map(|s| Value::Text(s.into())),
                        ],
                        inner
                    ),
                    0..8
                )
                .prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(cmd in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut payload = vec![cmd];
            payload.extend(body);
            let _ = Request::parse(&payload);
        }

        #[test]
        fn any_cbor_structure_parses_without_panic(cmd in prop_oneof![Just(1u8), Just(2u8), Just(6u8)], value in arb_value()) {
            let mut payload = vec![cmd];
            payload.extend(cbor::encode(&value));
            let _ = Request::parse(&payload);
        }
    }
}
