use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, MapAccess, Visitor, value::BorrowedStrDeserializer},
};
use serde_json::{Map, Value};

use crate::{BoxedCommand, CommandError, registry};

/// Turns a request body into a command.
///
/// Anything that is not a command at all (not JSON, not an object, `$type` missing, not a string or
/// not registered) is a 400 that names only the offending type; a body whose fields do not fit the
/// command is a 422 naming the field.
pub fn parse_command(body: &[u8]) -> Result<BoxedCommand, CommandError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| CommandError::InvalidCommand(format!("body is not valid JSON: {e}")))?;
    parse_command_value(value)
}

/// As [`parse_command`], for a body that is already parsed.
pub fn parse_command_value(value: Value) -> Result<BoxedCommand, CommandError> {
    let Value::Object(fields) = &value else {
        return Err(CommandError::InvalidCommand("body must be a JSON object".into()));
    };
    let name = match fields.get("$type") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(CommandError::InvalidCommand("`$type` must be a string".into())),
        None => return Err(CommandError::InvalidCommand("missing `$type`".into())),
    };
    check_registered(name)?;
    deserialize_command(&value)
}

/// The command `name` with `fields` as its fields (a `$type` among them is ignored): what the
/// router runs for a configuration. The fields are read where they are: adding the tag to a copy
/// of them would copy the whole request body for every routed request.
pub fn parse_named_command(name: &str, fields: &Map<String, Value>) -> Result<BoxedCommand, CommandError> {
    check_registered(name)?;
    deserialize_command(Tagged { name, fields })
}

/// Checked before deserializing, so that serde's unknown-variant error, which lists every
/// registered name, never reaches a client.
fn check_registered(name: &str) -> Result<(), CommandError> {
    match registry::lookup(name) {
        Some(_) => Ok(()),
        None => Err(CommandError::InvalidCommand(format!("unknown command type '{name}'"))),
    }
}

/// The command `input` holds, tag first; a field that does not fit is a 422 naming it.
fn deserialize_command<'de, D>(input: D) -> Result<BoxedCommand, CommandError>
where
    D: Deserializer<'de, Error = serde_json::Error> + Copy,
{
    // The path to a bad field is tracked only once a body is known not to fit: tracking it wraps
    // every field's deserializer, work that a body that fits does not need.
    if let Ok(command) = BoxedCommand::deserialize(input) {
        return Ok(command);
    }
    match serde_path_to_error::deserialize(input) {
        Ok(command) => Ok(command),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            Err(CommandError::validation(if path == "." { inner } else { format!("{path}: {inner}") }))
        }
    }
}

/// A map of fields read as `{"$type": name, ...fields}`.
#[derive(Clone, Copy)]
struct Tagged<'a> {
    name: &'a str,
    fields: &'a Map<String, Value>,
}

impl<'de> Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(TaggedFields { tag: Some(self.name), fields: self.fields.iter(), value: None })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The entries of a [`Tagged`]: the tag, then the fields but a `$type`.
struct TaggedFields<'a> {
    /// The name, until the tag's value is taken.
    tag: Option<&'a str>,
    fields: serde_json::map::Iter<'a>,
    /// The value of the field whose key was just read.
    value: Option<&'a Value>,
}

impl<'de> MapAccess<'de> for TaggedFields<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        if self.tag.is_some() {
            return seed.deserialize(BorrowedStrDeserializer::new("$type")).map(Some);
        }
        for (key, value) in self.fields.by_ref() {
            if key != "$type" {
                self.value = Some(value);
                return seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        if let Some(name) = self.tag.take() {
            return seed.deserialize(BorrowedStrDeserializer::new(name));
        }
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(serde::de::Error::custom("a value was read before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len() + usize::from(self.tag.is_some()))
    }
}

/// Runs a command for a principal: the one path every caller (the HTTP bus, the router, scripts)
/// takes, so that the permission check cannot be skipped.
pub async fn run_command(command: &dyn crate::Command, ctx: &crate::Context) -> Result<crate::Reply, CommandError> {
    let needed = command.permission();
    if !ctx.principal.permissions.allows(needed) {
        return Err(CommandError::Forbidden(needed));
    }
    command.execute(ctx).await
}
