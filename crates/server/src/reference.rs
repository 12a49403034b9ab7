//! The command reference, `docs/commands.md`, rendered from the registry: every command's fields,
//! permission and answer come from the JSON Schemas of its Rust types, so the page cannot drift
//! from the code. `hookbus reference` prints it; a test fails when the committed page is stale.

use std::{collections::BTreeMap, fmt::Write};

use serde_json::{Map, Value};

/// The whole page.
pub fn commands_markdown() -> String {
    let mut page = String::from(
        "# Command reference\n\n\
         Generated from the code by `hookbus reference > docs/commands.md`; a test fails when this \
         page differs from what the code generates.\n\n\
         Every command is posted to `POST /api/bpm/cmd` as a JSON object whose `$type` is the \
         command's name and whose other members are its fields. A success answers `{\"success\": \
         true, \"data\": …, \"message\": …}` with the command's answer as `data`; see \
         [the bus](bus.md) for errors and paging. `GET /api/bpm/commands` serves the same schemas \
         as JSON.\n\n",
    );
    let catalog = hookbus_core::catalog();
    let mut types = Types::default();
    for info in &catalog {
        let _ = writeln!(page, "- [`{}`](#{}) ({})", info.name, anchor(info.name), info.permission.as_str());
    }
    page.push('\n');
    for info in &catalog {
        let fields = info.schema().to_value();
        let answer = info.answer().to_value();
        types.collect(&fields);
        types.collect(&answer);
        let _ = writeln!(page, "## {}\n", info.name);
        if let Some(description) = description(&fields) {
            let _ = writeln!(page, "{description}\n");
        }
        let _ = writeln!(page, "Permission: `{}`.\n", info.permission.as_str());
        match fields_table(&fields, "Required") {
            Some(table) => {
                let _ = writeln!(page, "Fields:\n\n{table}");
            }
            None => page.push_str("No fields.\n\n"),
        }
        let _ = writeln!(page, "Answers: {}.\n", answer_summary(&answer));
        if let Some(table) = fields_table(&answer, "Always present") {
            let _ = writeln!(page, "{table}");
        }
    }
    if !types.0.is_empty() {
        page.push_str("## Types\n\nThe types the fields and answers above refer to.\n\n");
        for (name, schema) in &types.0 {
            let _ = writeln!(page, "### {name}\n");
            if let Some(description) = description(schema) {
                let _ = writeln!(page, "{description}\n");
            }
            match fields_table(schema, "Required") {
                Some(table) => {
                    let _ = writeln!(page, "{table}");
                }
                None => {
                    let _ = writeln!(page, "{}.\n", capitalise(&type_of(schema)));
                }
            }
        }
    }
    page.truncate(page.trim_end().len());
    page.push('\n');
    page
}

/// The named types (`$defs`) every schema refers to, by name.
#[derive(Default)]
struct Types(BTreeMap<String, Value>);

impl Types {
    fn collect(&mut self, schema: &Value) {
        let Some(defs) = schema.get("$defs").and_then(Value::as_object) else { return };
        for (name, def) in defs {
            self.0.entry(name.clone()).or_insert_with(|| def.clone());
        }
    }
}

fn description(schema: &Value) -> Option<String> {
    let text = schema.get("description")?.as_str()?;
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A markdown table of an object schema's properties, or `None` when it has none. `required`
/// heads the column that says which properties must be there.
fn fields_table(schema: &Value, required_heading: &str) -> Option<String> {
    let properties = schema.get("properties").and_then(Value::as_object).filter(|p| !p.is_empty())?;
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let mut table = format!("| Field | Type | {required_heading} | Description |\n|---|---|---|---|\n");
    for (name, property) in properties {
        let _ = writeln!(
            table,
            "| `{name}` | {} | {} | {} |",
            type_of(property),
            if required.contains(&name.as_str()) { "yes" } else { "no" },
            description(property).unwrap_or_default().replace('|', "\\|"),
        );
    }
    Some(table)
}

/// What an answer is, in a phrase: its type, and for an object the note that its members follow.
fn answer_summary(schema: &Value) -> String {
    if let Some(variants) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        let shapes: Vec<String> = variants.iter().map(shape).collect();
        return format!("one of: {}", shapes.join("; or "));
    }
    if schema.get("properties").is_some() {
        let title = schema.get("title").and_then(Value::as_str).unwrap_or("an object");
        return format!("`{title}`, an object");
    }
    type_of(schema)
}

/// A variant of an answer, inline: its members, or its type.
fn shape(schema: &Value) -> String {
    match schema.get("properties").and_then(Value::as_object) {
        Some(properties) => {
            let members: Vec<String> =
                properties.iter().map(|(name, property)| format!("`{name}` ({})", type_of(property))).collect();
            format!("an object with {}", members.join(", "))
        }
        None => type_of(schema),
    }
}

/// A schema's type, in words, with named types linked to their section.
fn type_of(schema: &Value) -> String {
    let Some(object) = schema.as_object() else {
        return "any JSON".to_owned();
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[`{name}`](#{})", anchor(name));
    }
    if let Some(values) = object.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| format!("`{}`", literal(v))).collect();
        return format!("one of {}", values.join(", "));
    }
    if let Some(value) = object.get("const") {
        return format!("`{}`", literal(value));
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(variants) = object.get(combinator).and_then(Value::as_array) {
            let joiner = if combinator == "allOf" { " and " } else { " or " };
            return variants.iter().map(type_of).collect::<Vec<_>>().join(joiner);
        }
    }
    match object.get("type") {
        Some(Value::String(kind)) => single_type(kind, object),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .map(|kind| single_type(kind, object))
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any JSON".to_owned(),
    }
}

fn single_type(kind: &str, object: &Map<String, Value>) -> String {
    match kind {
        "string" => match object.get("format").and_then(Value::as_str) {
            Some("uuid") => "UUID".to_owned(),
            Some("date-time") => "RFC 3339 timestamp".to_owned(),
            Some(format) => format!("string ({format})"),
            None => "string".to_owned(),
        },
        "integer" | "number" | "boolean" | "null" => kind.to_owned(),
        "array" => match object.get("items") {
            Some(items) => format!("array of {}", type_of(items)),
            None => "array".to_owned(),
        },
        "object" => match object.get("additionalProperties") {
            Some(Value::Object(values)) if !values.is_empty() => {
                format!("map of {}", type_of(&Value::Object(values.clone())))
            }
            _ => "object".to_owned(),
        },
        other => other.to_owned(),
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The anchor GitHub gives a heading: lower case, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading.to_lowercase().replace(' ', "-")
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_reference_is_what_the_code_generates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/commands.md");
        let generated = commands_markdown();
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/commands.md is stale: regenerate it with `cargo run -- reference > docs/commands.md`"
        );
    }

    #[test]
    fn every_command_has_a_section_with_its_permission() {
        let page = commands_markdown();
        let catalog = hookbus_core::catalog();
        assert!(catalog.len() >= 40, "the registry holds {} commands", catalog.len());
        for info in catalog {
            let section = format!("## {}\n", info.name);
            let at = page.find(&section).unwrap_or_else(|| panic!("no section for {}", info.name));
            let rest = &page[at + section.len()..];
            let rest = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
            assert!(
                rest.contains(&format!("Permission: `{}`.", info.permission.as_str())),
                "{} lacks its permission",
                info.name
            );
        }
    }
}
