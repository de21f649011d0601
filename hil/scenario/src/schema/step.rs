//! A step: `do = "…"` plus that action's fields, and the common `id`, `expect` and `timeout`.
//!
//! Steps are read by hand rather than through serde's internally tagged enums, which buffer the
//! table and lose every position: here each field keeps its span, so an unknown field, a wrong
//! type or an undefined board is reported at its own line and column.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Spanned;

use super::{Action, Expectation, Timeout};
use crate::load::spanned_message;

/// Where a step's fields are in its file (byte ranges); empty for steps built in code.
#[derive(Debug, Clone, Default)]
pub struct FieldSpans {
    keys: BTreeMap<String, Range<usize>>,
    values: BTreeMap<String, Range<usize>>,
}

impl FieldSpans {
    /// The span of a field's value, or of the step's `do` value.
    pub fn value(&self, field: &str) -> Option<Range<usize>> {
        self.values
            .get(field)
            .or_else(|| self.values.get("do"))
            .cloned()
    }

    /// The span of the step (its `do` value).
    pub fn step(&self) -> Option<Range<usize>> {
        self.values.get("do").cloned()
    }
}

/// Spans are positions, not content: two steps that say the same are equal.
impl PartialEq for FieldSpans {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// A name other steps refer to (e.g. `exchanges-identical = "wrong-password"`).
    pub id: Option<String>,
    /// What happens.
    pub action: Action,
    /// What must hold afterwards.
    pub expect: Vec<Expectation>,
    /// The step's time limit (default: per action).
    pub timeout: Option<Timeout>,
    /// Where the fields are in the file.
    pub spans: FieldSpans,
}

impl Step {
    /// A step doing `action` with no expectations.
    pub fn new(action: Action) -> Self {
        Self {
            id: None,
            action,
            expect: Vec::new(),
            timeout: None,
            spans: FieldSpans::default(),
        }
    }

    /// The effective time limit.
    pub fn time_limit(&self) -> std::time::Duration {
        self.timeout
            .map(|t| t.0)
            .unwrap_or_else(|| self.action.default_timeout())
    }
}

/// A field error with the position it belongs to, if known.
#[derive(Debug)]
struct FieldError {
    message: String,
    span: Option<Range<usize>>,
}

impl FieldError {
    fn at(mut self, span: Range<usize>) -> Self {
        self.span.get_or_insert(span);
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

impl de::Error for FieldError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            span: None,
        }
    }
}

type Entry = (Spanned<String>, Spanned<toml::Value>);

/// The action's own fields, handed to serde one by one with their spans.
struct Fields {
    entries: Vec<Entry>,
    next: usize,
}

impl<'de> MapAccess<'de> for Fields {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        let Some((key, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(StrDeserializer::<FieldError>::new(key.get_ref()))
            .map(Some)
            .map_err(|e| e.at(key.span()))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        let (_, value) = &self.entries[self.next];
        self.next += 1;
        seed.deserialize(value.get_ref().clone())
            .map_err(|e| FieldError {
                message: e.message().to_string(),
                span: Some(value.span()),
            })
    }
}

/// `do = "…"` selects the variant; the remaining fields are its struct.
struct ActionAccess {
    name: Spanned<String>,
    fields: Fields,
}

impl<'de> de::EnumAccess<'de> for ActionAccess {
    type Error = FieldError;
    type Variant = Fields;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Fields), FieldError> {
        let span = self.name.span();
        let variant = seed
            .deserialize(StrDeserializer::<FieldError>::new(self.name.get_ref()))
            .map_err(|e| e.at(span))?;
        Ok((variant, self.fields))
    }
}

impl<'de> de::VariantAccess<'de> for Fields {
    type Error = FieldError;

    fn unit_variant(self) -> Result<(), FieldError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _: T) -> Result<T::Value, FieldError> {
        Err(de::Error::custom("steps are tables"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, FieldError> {
        Err(de::Error::custom("steps are tables"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_map(self)
    }
}

struct ActionDeserializer(ActionAccess);

impl<'de> Deserializer<'de> for ActionDeserializer {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_enum(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

fn read_expectations(value: &Spanned<toml::Value>) -> Result<Vec<Expectation>, FieldError> {
    let one = |v: &toml::Value| {
        Expectation::from_toml(v).map_err(|e| {
            let mut message = e.message;
            if let Some((word, known)) = e.unknown {
                message = crate::load::with_suggestion(&message, &word, &known);
            }
            FieldError {
                message,
                span: Some(value.span()),
            }
        })
    };
    match value.get_ref() {
        toml::Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = Step;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a step table with `do = \"…\"`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
        let mut spans = FieldSpans::default();
        let mut rest: Vec<Entry> = Vec::new();
        let (mut name, mut id, mut expect, mut timeout) = (None, None, Vec::new(), None);
        let mut first_key: Option<Range<usize>> = None;
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value: Spanned<toml::Value> = map.next_value()?;
            first_key.get_or_insert(key.span());
            spans.keys.insert(key.get_ref().clone(), key.span());
            spans.values.insert(key.get_ref().clone(), value.span());
            let fail = |e: FieldError| {
                let span = e.span.clone().unwrap_or(value.span());
                de::Error::custom(spanned_message(span, &e.message))
            };
            match key.get_ref().as_str() {
                "do" => match value.get_ref() {
                    toml::Value::String(s) => name = Some(Spanned::new(value.span(), s.clone())),
                    other => {
                        return Err(fail(<FieldError as de::Error>::custom(format!(
                            "`do` names the step's action as a string, found {}",
                            other.type_str()
                        ))));
                    }
                },
                "id" => match value.get_ref() {
                    toml::Value::String(s) => id = Some(s.clone()),
                    other => {
                        return Err(fail(<FieldError as de::Error>::custom(format!(
                            "`id` must be a string, found {}",
                            other.type_str()
                        ))));
                    }
                },
                "expect" => expect = read_expectations(&value).map_err(fail)?,
                "timeout" => {
                    timeout = Some(
                        Timeout::deserialize(value.get_ref().clone().into_deserializer())
                            .map_err(|e| fail(<FieldError as de::Error>::custom(e.message())))?,
                    )
                }
                _ => rest.push((key, value)),
            }
        }
        let Some(name) = name else {
            let span = first_key.unwrap_or(0..0);
            return Err(de::Error::custom(spanned_message(
                span,
                "this step has no `do = \"…\"` (what it does)",
            )));
        };
        let do_span = name.span();
        let action = Action::deserialize(ActionDeserializer(ActionAccess {
            name,
            fields: Fields {
                entries: rest,
                next: 0,
            },
        }))
        .map_err(|e| {
            let span = e.span.clone().unwrap_or(do_span);
            de::Error::custom(spanned_message(span, &e.message))
        })?;
        Ok(Step {
            id,
            action,
            expect,
            timeout,
            spans,
        })
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StepVisitor)
    }
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let action = serde_json::to_value(&self.action).map_err(serde::ser::Error::custom)?;
        let (name, fields) = match action {
            serde_json::Value::Object(obj) => obj.into_iter().next().expect("one variant"),
            _ => unreachable!("every action is a struct variant"),
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("do", &name)?;
        if let Some(id) = &self.id {
            map.serialize_entry("id", id)?;
        }
        if let serde_json::Value::Object(fields) = fields {
            for (k, v) in fields {
                map.serialize_entry(&k, &v)?;
            }
        }
        if let Some(t) = &self.timeout {
            map.serialize_entry("timeout", t)?;
        }
        match self.expect.as_slice() {
            [] => {}
            [one] => map.serialize_entry("expect", one)?,
            many => map.serialize_entry("expect", many)?,
        }
        map.end()
    }
}

impl JsonSchema for Step {
    fn schema_name() -> Cow<'static, str> {
        "Step".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let action = serde_json::to_value(Action::json_schema(generator)).expect("JSON");
        let expectation =
            serde_json::to_value(generator.subschema_for::<Expectation>()).expect("JSON");
        let timeout = serde_json::to_value(generator.subschema_for::<Timeout>()).expect("JSON");
        let variants = action["oneOf"].as_array().cloned().unwrap_or_default();
        let steps: Vec<serde_json::Value> = variants
            .into_iter()
            .filter_map(|variant| {
                let name = variant["required"][0].as_str()?.to_string();
                let mut inner = variant["properties"][&name].clone();
                let props = inner["properties"].as_object_mut()?;
                props.insert("do".into(), serde_json::json!({ "const": name }));
                props.insert(
                    "id".into(),
                    serde_json::json!({"type": "string", "description": "A name other steps refer to."}),
                );
                props.insert(
                    "expect".into(),
                    serde_json::json!({"description": "What must hold afterwards.",
                        "oneOf": [expectation, {"type": "array", "items": expectation}]}),
                );
                props.insert("timeout".into(), timeout.clone());
                let mut required = vec![serde_json::json!("do")];
                required.extend(inner["required"].as_array().cloned().unwrap_or_default());
                inner["required"] = serde_json::Value::Array(required);
                if let Some(d) = variant.get("description") {
                    inner["description"] = d.clone();
                }
                Some(inner)
            })
            .collect();
        Schema::try_from(serde_json::json!({
            "description": "One step: `do` names the action; `id`, `expect` and `timeout` go with any action.",
            "type": "object",
            "required": ["do"],
            "oneOf": steps
        }))
        .expect("a schema object")
    }
}

#[cfg(test)]
mod tests {
    use crate::{CardEdit, Expectation, Step, Timeout};

    #[test]
    fn a_step_serialises_as_its_file_form() {
        let mut step = Step::new(crate::Action::EditBootFile {
            board: "pi".into(),
            file: "cmdline.txt".into(),
            edit: CardEdit::Append("init=/bin/sh".into()),
        });
        step.id = Some("edit".into());
        step.timeout = Some(Timeout(std::time::Duration::from_secs(90)));
        step.expect = vec![
            Expectation::NoShell,
            Expectation::Sealed {
                reason: Some("binding".into()),
            },
        ];
        let text = toml::to_string(&step).unwrap();
        assert!(text.starts_with("do = \"edit-boot-file\"\n"), "{text}");
        for line in ["id = \"edit\"", "board = \"pi\"", "timeout = \"90s\""] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        let back: Step = toml::from_str(&text).unwrap();
        assert_eq!(back, step);
    }
}
