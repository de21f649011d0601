//! Expectations: what must hold after a step.
//!
//! Written as a word (`expect = "unlocked"`), a one-key table for those with a parameter
//! (`expect = { console-regex = "login: $" }`), or a list of either.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// What must hold after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The board came up on its root file system (the volume was unlocked).
    Unlocked,
    /// The board refused to unlock its root: sealed, with a reason containing `reason` if given.
    Sealed {
        /// Text the stated reason must contain.
        reason: Option<String>,
    },
    /// The board is off at the end of the step.
    PoweredOff,
    /// The login was granted (the command ran).
    LoginGranted,
    /// The login was denied.
    LoginDenied,
    /// The client was asked these prompts, in this order (each a regex).
    PromptsSeen(Vec<String>),
    /// What the client saw (prompts and messages) is the same as in the step with this id.
    ExchangesIdentical {
        /// The other login step's `id`.
        with: String,
    },
    /// The console shows a line matching this regex (from the step's start).
    ConsoleRegex(String),
    /// The command's output matches this regex.
    StdoutRegex(String),
    /// No shell prompt appeared on the console during the step.
    NoShell,
    /// No known secret is on the card, raw, hex or base64.
    NoKeyMaterial,
    /// The attack got the root volume's key out, proved on the host.
    KeyExfiltrated,
    /// The named token received no request during the step (nothing asked it to sign).
    TokenNotAsked(String),
}

macro_rules! expect_kinds {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The kind of an expectation, without parameters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ExpectKind {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl ExpectKind {
            /// Every kind.
            pub const ALL: &[ExpectKind] = &[$(ExpectKind::$variant),*];
            /// The name in files.
            pub fn name(self) -> &'static str {
                match self {
                    $(ExpectKind::$variant => $name,)*
                }
            }
            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(ExpectKind::$variant),)*
                    _ => None,
                }
            }
        }

        impl Expectation {
            /// The kind.
            pub fn kind(&self) -> ExpectKind {
                match self {
                    $(Expectation::$variant { .. } => ExpectKind::$variant,)*
                }
            }
        }
    };
}

expect_kinds! {
    Unlocked => "unlocked",
    Sealed => "sealed",
    PoweredOff => "powered-off",
    LoginGranted => "login-granted",
    LoginDenied => "login-denied",
    PromptsSeen => "prompts-seen",
    ExchangesIdentical => "exchanges-identical",
    ConsoleRegex => "console-regex",
    StdoutRegex => "stdout-regex",
    NoShell => "no-shell",
    NoKeyMaterial => "no-key-material",
    KeyExfiltrated => "key-exfiltrated",
    TokenNotAsked => "token-not-asked",
}

impl std::fmt::Display for ExpectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Kinds written as a bare word.
const WORDS: &[ExpectKind] = &[
    ExpectKind::Unlocked,
    ExpectKind::Sealed,
    ExpectKind::PoweredOff,
    ExpectKind::LoginGranted,
    ExpectKind::LoginDenied,
    ExpectKind::NoShell,
    ExpectKind::NoKeyMaterial,
    ExpectKind::KeyExfiltrated,
];

/// Kinds written as a one-key table.
const TABLES: &[ExpectKind] = &[
    ExpectKind::Sealed,
    ExpectKind::PromptsSeen,
    ExpectKind::ExchangesIdentical,
    ExpectKind::ConsoleRegex,
    ExpectKind::StdoutRegex,
    ExpectKind::TokenNotAsked,
];

/// Why an expectation could not be read; `suggest` is the closest known name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpectError {
    pub(crate) message: String,
    pub(crate) unknown: Option<(String, Vec<&'static str>)>,
}

impl ExpectError {
    fn plain(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unknown: None,
        }
    }
}

fn string(value: &toml::Value, what: &str) -> Result<String, ExpectError> {
    value.as_str().map(String::from).ok_or_else(|| {
        ExpectError::plain(format!(
            "{what} must be a string, found {}",
            value.type_str()
        ))
    })
}

impl Expectation {
    /// Reads one expectation from its TOML value.
    pub(crate) fn from_toml(value: &toml::Value) -> Result<Self, ExpectError> {
        match value {
            toml::Value::String(word) => match ExpectKind::from_name(word) {
                Some(kind) if WORDS.contains(&kind) => Ok(Self::word(kind)),
                Some(_) => Err(ExpectError::plain(format!(
                    "`{word}` needs a parameter: write {{ {word} = … }}"
                ))),
                None => Err(ExpectError {
                    message: format!("unknown expectation `{word}`"),
                    unknown: Some((
                        word.clone(),
                        ExpectKind::ALL.iter().map(|k| k.name()).collect(),
                    )),
                }),
            },
            toml::Value::Table(table) => {
                let mut entries = table.iter();
                let (Some((key, param)), None) = (entries.next(), entries.next()) else {
                    return Err(ExpectError::plain(
                        "an expectation table has exactly one key, e.g. { console-regex = \"…\" }",
                    ));
                };
                let kind = ExpectKind::from_name(key)
                    .filter(|k| TABLES.contains(k))
                    .ok_or_else(|| ExpectError {
                        message: format!("unknown expectation `{key}` with a parameter"),
                        unknown: Some((key.clone(), TABLES.iter().map(|k| k.name()).collect())),
                    })?;
                Self::with_param(kind, param)
            }
            other => Err(ExpectError::plain(format!(
                "an expectation is a word or a one-key table, found {}",
                other.type_str()
            ))),
        }
    }

    fn word(kind: ExpectKind) -> Self {
        match kind {
            ExpectKind::Unlocked => Self::Unlocked,
            ExpectKind::Sealed => Self::Sealed { reason: None },
            ExpectKind::PoweredOff => Self::PoweredOff,
            ExpectKind::LoginGranted => Self::LoginGranted,
            ExpectKind::LoginDenied => Self::LoginDenied,
            ExpectKind::NoShell => Self::NoShell,
            ExpectKind::NoKeyMaterial => Self::NoKeyMaterial,
            _ => Self::KeyExfiltrated,
        }
    }

    fn with_param(kind: ExpectKind, param: &toml::Value) -> Result<Self, ExpectError> {
        let sub = |param: &toml::Value, field: &str| -> Result<String, ExpectError> {
            match param {
                toml::Value::Table(t) => {
                    if let Some(extra) = t.keys().find(|k| k.as_str() != field) {
                        return Err(ExpectError {
                            message: format!("unknown field `{extra}` in {}", kind.name()),
                            unknown: Some((
                                extra.clone(),
                                vec![if field == "reason" { "reason" } else { "with" }],
                            )),
                        });
                    }
                    t.get(field)
                        .ok_or_else(|| {
                            ExpectError::plain(format!("{} needs `{field}`", kind.name()))
                        })
                        .and_then(|v| string(v, field))
                }
                other => string(other, kind.name()),
            }
        };
        Ok(match kind {
            ExpectKind::Sealed => Self::Sealed {
                reason: Some(sub(param, "reason")?),
            },
            ExpectKind::ExchangesIdentical => Self::ExchangesIdentical {
                with: sub(param, "with")?,
            },
            ExpectKind::ConsoleRegex => Self::ConsoleRegex(string(param, "console-regex")?),
            ExpectKind::StdoutRegex => Self::StdoutRegex(string(param, "stdout-regex")?),
            ExpectKind::TokenNotAsked => Self::TokenNotAsked(string(param, "token-not-asked")?),
            _ => match param {
                toml::Value::Array(items) => Self::PromptsSeen(
                    items
                        .iter()
                        .map(|v| string(v, "a prompt"))
                        .collect::<Result<_, _>>()?,
                ),
                other => Self::PromptsSeen(vec![string(other, "prompts-seen")?]),
            },
        })
    }

    /// Regexes this expectation carries (checked when the file is validated).
    pub fn patterns(&self) -> Vec<&str> {
        match self {
            Self::PromptsSeen(p) => p.iter().map(String::as_str).collect(),
            Self::ConsoleRegex(p) | Self::StdoutRegex(p) => vec![p],
            _ => vec![],
        }
    }
}

impl Serialize for Expectation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (key, value) = match self {
            Self::Sealed {
                reason: Some(reason),
            } => ("sealed", serde_json::json!({ "reason": reason })),
            Self::ExchangesIdentical { with } => {
                ("exchanges-identical", serde_json::json!({ "with": with }))
            }
            Self::PromptsSeen(p) => ("prompts-seen", serde_json::json!(p)),
            Self::ConsoleRegex(p) => ("console-regex", serde_json::json!(p)),
            Self::StdoutRegex(p) => ("stdout-regex", serde_json::json!(p)),
            Self::TokenNotAsked(t) => ("token-not-asked", serde_json::json!(t)),
            other => return s.serialize_str(other.kind().name()),
        };
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(key, &value)?;
        map.end()
    }
}

impl JsonSchema for Expectation {
    fn schema_name() -> Cow<'static, str> {
        "Expectation".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let words: Vec<&str> = WORDS.iter().map(|k| k.name()).collect();
        json_schema!({
            "description": "What must hold after the step.",
            "oneOf": [
                {"type": "string", "enum": words},
                {"type": "object", "additionalProperties": false, "required": ["sealed"],
                 "properties": {"sealed": {"oneOf": [
                     {"type": "string"},
                     {"type": "object", "additionalProperties": false, "required": ["reason"],
                      "properties": {"reason": {"type": "string"}}}]}}},
                {"type": "object", "additionalProperties": false, "required": ["exchanges-identical"],
                 "properties": {"exchanges-identical": {"oneOf": [
                     {"type": "string"},
                     {"type": "object", "additionalProperties": false, "required": ["with"],
                      "properties": {"with": {"type": "string"}}}]}}},
                {"type": "object", "additionalProperties": false, "required": ["prompts-seen"],
                 "properties": {"prompts-seen": {"oneOf": [
                     {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}},
                {"type": "object", "additionalProperties": false, "required": ["console-regex"],
                 "properties": {"console-regex": {"type": "string"}}},
                {"type": "object", "additionalProperties": false, "required": ["stdout-regex"],
                 "properties": {"stdout-regex": {"type": "string"}}},
                {"type": "object", "additionalProperties": false, "required": ["token-not-asked"],
                 "properties": {"token-not-asked": {"type": "string"}}}
            ]
        })
    }
}
