//! A definition's steps, checked when saved and parsed when run.

use std::collections::BTreeMap;

use hookbus_core::Permission;
use hookbus_script::ScriptEngine;
use jsonpath_rust::parser::model::JpQuery;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most steps a definition may have.
const MAX_STEPS: usize = 100;

/// A step as written: a bus command with mapped input, or a script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepInput {
    /// `[A-Za-z0-9_]{1,64}`, unique in the definition: the step's output is stored under it.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_name: Option<String>,
    /// Field name to a JSONPath (starting with `$`) over the process variables, or a literal.
    /// Without it the command gets the variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<BTreeMap<String, Value>>,
    /// A rhai script; `context` (the variables) is in scope and its value is the step's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A step ready to run.
#[derive(Debug, Clone)]
pub enum Step {
    Command { name: String, command: String, input: Option<BTreeMap<String, Mapped>> },
    Script { name: String, code: String },
}

#[derive(Debug, Clone)]
pub enum Mapped {
    Path(Box<JpQuery>),
    Literal(Value),
}

impl Step {
    pub fn name(&self) -> &str {
        match self {
            Step::Command { name, .. } | Step::Script { name, .. } => name,
        }
    }
}

/// Checks every rule, reporting each failure.
pub fn validate(steps: &[StepInput], scripts: &ScriptEngine) -> Vec<String> {
    let mut problems = Vec::new();
    if steps.is_empty() {
        problems.push("steps: at least one step is required".to_owned());
    }
    if steps.len() > MAX_STEPS {
        problems.push(format!("steps: at most {MAX_STEPS} steps"));
    }
    let mut seen = std::collections::HashSet::new();
    for (index, step) in steps.iter().enumerate() {
        let at = format!("steps[{index}]");
        let valid_name = !step.name.is_empty()
            && step.name.len() <= 64
            && step.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_name {
            problems.push(format!("{at}.name: '{}' must be 1-64 letters, digits or '_'", step.name));
        } else if !seen.insert(step.name.clone()) {
            problems.push(format!("{at}.name: '{}' is used by another step", step.name));
        }
        match (&step.command_name, &step.code) {
            (Some(command), None) => {
                match hookbus_core::lookup(command) {
                    None => problems.push(format!("{at}.commandName: '{command}' is not a registered command")),
                    Some(info) if info.permission == Permission::Admin => {
                        problems.push(format!("{at}.commandName: '{command}' requires admin"))
                    }
                    Some(_) => {}
                }
                for (field, value) in step.input.iter().flatten() {
                    if let Value::String(path) = value
                        && path.starts_with('$')
                        && let Err(e) = jsonpath_rust::parser::parse_json_path(path)
                    {
                        problems.push(format!("{at}.input.{field}: '{path}' is not a valid JSONPath: {e}"));
                    }
                }
            }
            (None, Some(code)) => {
                if step.input.is_some() {
                    problems.push(format!("{at}.input: a script step reads `context` instead"));
                }
                if let Err(e) = scripts.compile(code) {
                    problems.push(format!(
                        "{at}.code: syntax error at line {}, column {}: {}",
                        e.line, e.column, e.message
                    ));
                }
            }
            _ => problems.push(format!("{at}: give exactly one of commandName and code")),
        }
    }
    problems
}

/// Every command the steps run, with where it is named: what the definition's saver must be
/// allowed to run. A script step's are those its source names (see
/// [`hookbus_script::commands_named`]).
pub fn commands(steps: &[StepInput]) -> Vec<(String, String)> {
    steps
        .iter()
        .enumerate()
        .flat_map(|(index, step)| match (&step.command_name, &step.code) {
            (Some(command), _) => vec![(format!("steps[{index}].commandName"), command.clone())],
            (None, Some(code)) => hookbus_script::commands_named(code)
                .into_iter()
                .map(|name| (format!("steps[{index}].code"), name))
                .collect(),
            (None, None) => Vec::new(),
        })
        .collect()
}

/// Parses stored steps (valid when saved).
pub fn parse(steps: &Value) -> Result<Vec<Step>, String> {
    let steps: Vec<StepInput> = serde_json::from_value(steps.clone()).map_err(|e| e.to_string())?;
    steps
        .into_iter()
        .map(|step| match (step.command_name, step.code) {
            (Some(command), _) => {
                let input = step
                    .input
                    .map(|fields| {
                        fields
                            .into_iter()
                            .map(|(field, value)| match value {
                                Value::String(path) if path.starts_with('$') => {
                                    jsonpath_rust::parser::parse_json_path(&path)
                                        .map(|query| (field, Mapped::Path(Box::new(query))))
                                        .map_err(|e| e.to_string())
                                }
                                literal => Ok((field, Mapped::Literal(literal))),
                            })
                            .collect::<Result<BTreeMap<_, _>, String>>()
                    })
                    .transpose()?;
                Ok(Step::Command { name: step.name, command, input })
            }
            (None, Some(code)) => Ok(Step::Script { name: step.name, code }),
            (None, None) => Err(format!("step {} has neither commandName nor code", step.name)),
        })
        .collect()
}
