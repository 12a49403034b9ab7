//! What every route turns its body into: a list of [`Notification`]s, each with its own
//! deduplication key and the event it publishes, read from JSON with every problem reported at
//! once, each naming its field.

use serde_json::{Map, Value};

use hookbus_core::CommandError;
use hookbus_router::json_kind;

use crate::publish::NewEvent;

/// One thing a provider told us.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    /// How the answer names it: `("rrr", "110002071256")`, `("event", "mono.events.account_updated")`.
    pub reference: (&'static str, String),
    /// Unique per provider: a repeat of this notification has the same key.
    pub dedupe_key: String,
    /// The item as the provider sent it, unknown fields and all: what a forward hands on.
    pub original: Value,
    /// What accepting it publishes.
    pub event: NewEvent,
}

impl Notification {
    /// A notification whose reference is also its deduplication key, publishing `data` (the item,
    /// perhaps completed) under `event_name`.
    pub(crate) fn keyed_by_reference(
        event_name: &str,
        reference: (&'static str, String),
        original: &Map<String, Value>,
        data: Map<String, Value>,
    ) -> Self {
        Self {
            dedupe_key: reference.1.clone(),
            reference,
            original: Value::Object(original.clone()),
            event: NewEvent { event_name: event_name.to_owned(), data: Value::Object(data), ..NewEvent::default() },
        }
    }
}

/// What a body's items gave: the notifications, or every problem found.
pub(crate) fn collected(
    notifications: Vec<Notification>,
    errors: Vec<String>,
) -> Result<Vec<Notification>, CommandError> {
    if errors.is_empty() { Ok(notifications) } else { Err(CommandError::Validation(errors)) }
}

/// One object of a body, with the prefix its field names take in messages (`[2].`, or nothing
/// for a lone object).
#[derive(Debug)]
pub(crate) struct BodyItem<'a> {
    pub prefix: String,
    pub object: &'a Map<String, Value>,
}

/// The items of a body that is an array of objects or, where `single` allows, one object.
/// Empty arrays are a 422; more than `max_items` a 413.
pub(crate) fn items(body: &Value, single: bool, max_items: usize) -> Result<Vec<BodyItem<'_>>, CommandError> {
    let expected = if single { "a JSON object or an array of objects" } else { "a JSON array of objects" };
    match body {
        Value::Object(object) if single => Ok(vec![BodyItem { prefix: String::new(), object }]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(CommandError::validation("body: at least one notification is required"));
            }
            if items.len() > max_items {
                return Err(CommandError::Rejected {
                    status: 413,
                    message: "Payload too large".into(),
                    errors: vec![format!("body: at most {max_items} notifications per request, got {}", items.len())],
                });
            }
            let mut objects = Vec::with_capacity(items.len());
            let mut errors = Vec::new();
            for (index, item) in items.iter().enumerate() {
                match item {
                    Value::Object(object) => objects.push(BodyItem { prefix: format!("[{index}]."), object }),
                    other => errors.push(format!("[{index}]: must be an object, not {}", json_kind(other))),
                }
            }
            if errors.is_empty() { Ok(objects) } else { Err(CommandError::Validation(errors)) }
        }
        other => Err(CommandError::validation(format!("body: must be {expected}, not {}", json_kind(other)))),
    }
}

/// Reads the fields of one object, collecting a message for every problem.
#[derive(Debug)]
pub(crate) struct Fields<'a, 'e> {
    object: &'a Map<String, Value>,
    prefix: &'e str,
    errors: &'e mut Vec<String>,
}

impl<'a, 'e> Fields<'a, 'e> {
    pub(crate) fn new(object: &'a Map<String, Value>, prefix: &'e str, errors: &'e mut Vec<String>) -> Self {
        Self { object, prefix, errors }
    }

    /// The field's value, `null` counting as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|value| !value.is_null())
    }

    fn problem(&mut self, name: &str, text: &str) {
        self.errors.push(format!("{}{name} {text}", self.prefix));
    }

    /// A non-empty string.
    pub(crate) fn required_text(&mut self, name: &str) -> Option<String> {
        self.required(name, Self::optional_text)
    }

    /// A non-empty identifier (string or number), as text.
    pub(crate) fn required_id(&mut self, name: &str) -> Option<String> {
        self.required(name, Self::optional_id)
    }

    /// The first of `names` present, as a non-empty identifier, with its name.
    pub(crate) fn required_id_of(&mut self, names: &[&'static str]) -> Option<(&'static str, String)> {
        // The first that holds an identifier; else the first present, to say what is wrong with it.
        let holds_id = |value: &Value| scalar_text(value).is_some_and(|text| !text.trim().is_empty());
        let chosen = names.iter().copied().find(|name| self.get(name).is_some_and(holds_id));
        let Some(name) = chosen.or_else(|| names.iter().copied().find(|name| self.get(name).is_some())) else {
            let (last, others) = names.split_last()?;
            let names = if others.is_empty() { (*last).to_owned() } else { format!("{} or {last}", others.join(", ")) };
            self.problem(&names, "is required");
            return None;
        };
        self.required_id(name).map(|value| (name, value))
    }

    fn required(&mut self, name: &str, read: fn(&mut Self, &str) -> Option<String>) -> Option<String> {
        if self.get(name).is_none() {
            self.problem(name, "is required");
            return None;
        }
        let text = read(self, name)?;
        if text.is_empty() {
            self.problem(name, "must not be empty");
            return None;
        }
        Some(text)
    }

    /// A string, if present.
    pub(crate) fn optional_text(&mut self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(text) => Some(text.trim().to_owned()),
            other => {
                let text = format!("must be a string, not {}", json_kind(other));
                self.problem(name, &text);
                None
            }
        }
    }

    /// An identifier providers send as a string or a number, as text; if present.
    pub(crate) fn optional_id(&mut self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(text) => Some(text.trim().to_owned()),
            Value::Number(number) => Some(id_text(number)),
            other => {
                let text = format!("must be a string or a number, not {}", json_kind(other));
                self.problem(name, &text);
                None
            }
        }
    }

    /// A JSON object.
    pub(crate) fn required_object(&mut self, name: &str) -> Option<&'a Map<String, Value>> {
        match self.get(name) {
            Some(Value::Object(object)) => Some(object),
            None => {
                self.problem(name, "is required");
                None
            }
            Some(other) => {
                let text = format!("must be an object, not {}", json_kind(other));
                self.problem(name, &text);
                None
            }
        }
    }

    /// An amount: a number, or a string holding a decimal number (`"1000.00"`).
    pub(crate) fn required_amount(&mut self, name: &str) -> Option<()> {
        match self.get(name) {
            None => {
                self.problem(name, "is required");
                None
            }
            Some(Value::Number(_)) => Some(()),
            Some(Value::String(text)) if is_decimal(text.trim()) => Some(()),
            Some(Value::String(_)) => {
                self.problem(name, "must be a decimal number");
                None
            }
            Some(other) => {
                let text = format!("must be a number, not {}", json_kind(other));
                self.problem(name, &text);
                None
            }
        }
    }
}

/// A number sent as an identifier, as text: `506.0` is `506`, as the provider meant it.
fn id_text(number: &serde_json::Number) -> String {
    match number.as_f64() {
        Some(value) if number.is_f64() && value.fract() == 0.0 && value.abs() < 9.0e15 => format!("{value:.0}"),
        _ => number.to_string(),
    }
}

/// `123`, `-4.5`, `1000.00`: digits with at most one point, optionally signed.
fn is_decimal(text: &str) -> bool {
    decimal_parts(text).is_some()
}

/// A decimal's parts as written: whether it is negative, its whole digits and its fraction digits
/// (`-4.5`: `(true, "4", "5")`); `None` for anything but digits with at most one point, optionally
/// signed.
pub(crate) fn decimal_parts(text: &str) -> Option<(bool, &str, &str)> {
    let (negative, digits) = text.strip_prefix('-').map_or((false, text), |digits| (true, digits));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    (!whole.is_empty() && plain(whole) && plain(fraction)).then_some((negative, whole, fraction))
}

/// A string's text or a number's digits; `None` for any other JSON value.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decimals() {
        assert!(is_decimal("1000.00") && is_decimal("5") && is_decimal("-4.5"));
        assert!(!is_decimal("") && !is_decimal("1,000") && !is_decimal("1.2.3") && !is_decimal(".5"));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let body = json!({"a": 5, "b": "", "c": [1], "d": "x"});
        let object = body.as_object().cloned().unwrap_or_default();
        let mut errors = Vec::new();
        let mut fields = Fields::new(&object, "[3].", &mut errors);
        assert_eq!(fields.required_text("a"), None);
        assert_eq!(fields.required_text("b"), None);
        assert_eq!(fields.optional_id("c"), None);
        assert_eq!(fields.required_amount("d"), None);
        assert_eq!(fields.required_id("missing"), None);
        assert_eq!(fields.required_id("a"), Some("5".into()));
        assert_eq!(
            errors,
            [
                "[3].a must be a string, not a number",
                "[3].b must not be empty",
                "[3].c must be a string or a number, not an array",
                "[3].d must be a decimal number",
                "[3].missing is required",
            ]
        );
    }

    #[test]
    fn bodies_of_the_wrong_shape_or_size_are_refused() {
        let status = |body: Value, single: bool| items(&body, single, 2).err().map(|e| e.status());
        assert_eq!(status(json!([]), false), Some(422));
        assert_eq!(status(json!([{}, {}, {}]), false), Some(413));
        assert_eq!(status(json!({}), false), Some(422));
        assert_eq!(status(json!({}), true), None);
        assert_eq!(status(json!([{}, 5]), true), Some(422));
        assert_eq!(status(json!("text"), true), Some(422));
    }
}
