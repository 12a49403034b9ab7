use serde::Deserialize;
use serde_json::Value;

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
    // Checked here so that serde's unknown-variant error, which lists every registered name, never
    // reaches a client.
    if registry::lookup(name).is_none() {
        return Err(CommandError::InvalidCommand(format!("unknown command type '{name}'")));
    }
    // The path to a bad field is tracked only once a body is known not to fit: tracking it wraps
    // every field's deserializer, which cost the router's type-0 routes about 1% of their CPU.
    if let Ok(command) = BoxedCommand::deserialize(&value) {
        return Ok(command);
    }
    match serde_path_to_error::deserialize(&value) {
        Ok(command) => Ok(command),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            Err(CommandError::validation(if path == "." { inner } else { format!("{path}: {inner}") }))
        }
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
