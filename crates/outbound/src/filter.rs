//! Subscription filters: attribute paths over an event's `changedAttributes`, and
//! JSONPath `match` expressions over the event. Both are checked when a subscription is saved.

use jsonpath_rust::parser::{model::JpQuery, parse_json_path};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most attribute paths one subscription may list.
pub const MAX_ATTRIBUTES: usize = 50;

/// A subscription's filters, as saved and shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filters {
    /// Paths like `/applications/0/`, `/contacts/*/contactType/name`, `/fees/*`, `/fields/1109`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// JSONPath expressions over `{eventName, resource, data}`; each must select something.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<String>,
}

/// Filters ready to apply: the paths split, the JSONPaths parsed.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilters {
    attributes: Vec<AttributePath>,
    matches: Vec<JpQuery>,
}

impl Filters {
    /// Checks and compiles; each problem is one message naming the field.
    pub fn compile(&self) -> Result<CompiledFilters, Vec<String>> {
        let mut errors = Vec::new();
        if self.attributes.len() > MAX_ATTRIBUTES {
            errors.push(format!("filters.attributes: at most {MAX_ATTRIBUTES} paths are allowed"));
        }
        let mut attributes = Vec::new();
        for (i, path) in self.attributes.iter().enumerate() {
            match AttributePath::parse(path) {
                Ok(parsed) => attributes.push(parsed),
                Err(why) => errors.push(format!("filters.attributes[{i}]: {why}")),
            }
        }
        let mut matches = Vec::new();
        for (i, path) in self.matches.iter().enumerate() {
            match parse_json_path(path) {
                Ok(parsed) => matches.push(parsed),
                Err(e) => errors.push(format!("filters.match[{i}]: invalid JSONPath '{path}': {e}")),
            }
        }
        if errors.is_empty() { Ok(CompiledFilters { attributes, matches }) } else { Err(errors) }
    }
}

impl CompiledFilters {
    /// Whether an event passes: a changed attribute matches one of the paths (when both the event
    /// lists changed attributes and the subscription lists paths), and every JSONPath selects
    /// something in `{eventName, resource, data}`.
    pub fn admit(&self, event: &Value, changed: Option<&[String]>) -> bool {
        self.refusal(event, changed).is_none()
    }

    /// The first filter the event does not pass, if any.
    pub fn refusal(&self, event: &Value, changed: Option<&[String]>) -> Option<Refusal> {
        if let Some(changed) = changed
            && !self.attributes.is_empty()
            && !changed.iter().any(|path| self.attributes.iter().any(|filter| filter.matches(path)))
        {
            return Some(Refusal::Attributes);
        }
        self.matches
            .iter()
            .position(|query| !jsonpath_rust::query::js_path_process(query, event).is_ok_and(|found| !found.is_empty()))
            .map(Refusal::Match)
    }
}

/// Which filter refused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No changed attribute is under any of `filters.attributes`.
    Attributes,
    /// `filters.match[i]` selects nothing.
    Match(usize),
}

/// One attribute filter path.
#[derive(Debug, Clone, PartialEq)]
struct AttributePath {
    segments: Vec<Segment>,
    /// Ends with `/` or `/*`: everything below the prefix matches too.
    subtree: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Any,
    Name(String),
}

impl AttributePath {
    fn parse(path: &str) -> Result<Self, String> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("'{path}' must start with '/'"));
        };
        if path.chars().any(char::is_whitespace) {
            return Err(format!("'{path}' must not contain spaces"));
        }
        let (rest, subtree) = if let Some(prefix) = rest.strip_suffix("/*") {
            (prefix, true)
        } else if let Some(prefix) = rest.strip_suffix('/') {
            (prefix, true)
        } else {
            (rest, rest.is_empty() || rest == "*")
        };
        let rest = if rest == "*" && subtree { "" } else { rest };
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for segment in rest.split('/') {
                match segment {
                    "" => return Err(format!("'{path}' has an empty segment")),
                    "*" => segments.push(Segment::Any),
                    name => segments.push(Segment::Name(name.to_owned())),
                }
            }
        }
        Ok(Self { segments, subtree })
    }

    /// Whether a changed attribute path (`/contacts/2/contactType/name`) is covered.
    fn matches(&self, changed: &str) -> bool {
        let changed: Vec<&str> = changed.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let long_enough =
            if self.subtree { changed.len() >= self.segments.len() } else { changed.len() == self.segments.len() };
        long_enough
            && self.segments.iter().zip(&changed).all(|(segment, part)| match segment {
                Segment::Any => true,
                Segment::Name(name) => name == part,
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filters(attributes: &[&str]) -> CompiledFilters {
        Filters { attributes: attributes.iter().map(|s| (*s).to_owned()).collect(), matches: vec![] }
            .compile()
            .expect("valid")
    }

    fn admits(filters: &CompiledFilters, changed: &[&str]) -> bool {
        let changed: Vec<String> = changed.iter().map(|s| (*s).to_owned()).collect();
        filters.admit(&json!({}), Some(&changed))
    }

    /// Examples of attribute paths and the changes they match.
    #[test]
    fn attribute_paths_match_as_documented() {
        let static_field = filters(&["/applicationTakenMethodType"]);
        assert!(admits(&static_field, &["/applicationTakenMethodType"]));
        assert!(!admits(&static_field, &["/applicationTakenMethodTypeX"]));

        let application = filters(&["/applications/0/"]);
        assert!(admits(&application, &["/applications/0/loanAmount"]));
        assert!(admits(&application, &["/applications/0/borrower/firstName"]));
        assert!(!admits(&application, &["/applications/1/loanAmount"]));

        let contact_name = filters(&["/contacts/*/contactType/name"]);
        assert!(admits(&contact_name, &["/contacts/3/contactType/name"]));
        assert!(!admits(&contact_name, &["/contacts/3/contactType/code"]));
        assert!(!admits(&contact_name, &["/contacts/3/contactType/name/extra"]));

        let milestones = filters(&["/milestoneLogs/*/doneIndicator"]);
        assert!(admits(&milestones, &["/milestoneLogs/7/doneIndicator"]));

        let fees = filters(&["/fees/*"]);
        assert!(admits(&fees, &["/fees/0/amount"]));
        assert!(admits(&fees, &["/fees/2"]));
        assert!(!admits(&fees, &["/assets/0"]));

        let field = filters(&["/fields/1109"]);
        assert!(admits(&field, &["/fields/1109"]));
        assert!(!admits(&field, &["/fields/1110"]));

        // Any one changed path is enough.
        assert!(admits(&field, &["/fields/1", "/fields/1109"]));
    }

    #[test]
    fn events_without_changed_attributes_pass_attribute_filters() {
        assert!(filters(&["/fees/*"]).admit(&json!({}), None));
    }

    #[test]
    fn bad_paths_and_too_many_are_refused() {
        let bad = Filters { attributes: vec!["fees".into(), "/a//b".into()], matches: vec!["$[".into()] };
        let errors = bad.compile().expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("filters.attributes[0]"));
        assert!(errors[2].starts_with("filters.match[0]"));
        let many = Filters { attributes: (0..51).map(|i| format!("/fields/{i}")).collect(), matches: vec![] };
        assert!(many.compile().expect_err("too many")[0].contains("at most 50"));
    }

    #[test]
    fn every_match_expression_must_select_something() {
        let matches = vec!["$.data.items[?@.amount > 100]".into(), "$.resource".into()];
        let compiled = Filters { attributes: vec![], matches }.compile().expect("valid");
        let event = |amount: i64| json!({"eventName": "WB_Loan_Opened", "resource": "Loan", "data": {"items": [{"amount": amount}]}});
        assert!(compiled.admit(&event(500), None));
        assert!(!compiled.admit(&event(50), None));
        let no_resource =
            json!({"eventName": "WB_Loan_Opened", "resource": null, "data": {"items": [{"amount": 500}]}});
        // `$.resource` selects the null: present, so it passes; a missing member would not.
        assert!(compiled.admit(&no_resource, None));
        assert!(!compiled.admit(&json!({"eventName": "x", "data": {"items": [{"amount": 500}]}}), None));
    }
}
