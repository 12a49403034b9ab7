//! The fields of a configuration as they arrive, and their validation into a [`ConfigSpec`].

use std::collections::BTreeMap;

use hookbus_core::{CommandError, Permission};
use hookbus_script::ScriptEngine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{ExecutionType, HookPath, HttpMethod, IdempotencyKey, IpAllowList, parse_json_path};

/// The command a type-3 configuration runs.
const START_PROCESS: &str = "StartProcessInstanceCommand";

/// Longest command chain a configuration may hold.
const MAX_CHAIN_STEPS: usize = 50;

/// Every field of a configuration but `id` and `key`, as sent by create and update.
///
/// Fields are optional on the wire so that one request reports every missing or bad field at once
/// ("Validation failed" with one entry per rule) instead of stopping at the first.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFields {
    /// Required.
    pub description: Option<String>,
    /// Required.
    pub is_enabled: Option<bool>,
    /// Required: the URL path the router also answers at; starts with `/`.
    pub path: Option<String>,
    /// Required: GET, POST, PUT, PATCH or DELETE (any case).
    pub action: Option<String>,
    /// Required: 0 ExecuteNativeCommand, 1 ExecuteCommandChain, 2 ExecuteCode, 3 StartProcess.
    pub execution_type: Option<i64>,
    /// For type 0: a registered command name.
    pub command_name: Option<String>,
    /// For type 1: the steps.
    pub command_chain: Option<Vec<ChainStepInput>>,
    /// For type 2: a rhai script.
    pub execution_code: Option<String>,
    /// For type 3: a process definition id.
    pub process_definition_id: Option<i64>,
    /// Comma-separated IPv4/IPv6 addresses and CIDR ranges; empty means anyone.
    #[serde(rename = "allowableIPs")]
    pub allowable_ips: Option<String>,
    /// `$.json.path` into the body, or `header:<Name>`.
    pub idempotency_key: Option<String>,
    /// Answer 202 at once and run the handler in the background.
    pub respond_async: Option<bool>,
    /// With `idempotencyKey`: whether a repeated request gets the first request's answer data
    /// (default false: only `{"duplicate": true}` and the first's status). On, anyone who repeats
    /// a key sees the first answer without passing the script's own checks.
    pub idempotency_returns_result: Option<bool>,
}

/// One step of a command chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainStepInput {
    pub command_name: String,
    /// Field name to a JSONPath (a string starting with `$`) over
    /// `{request, body, steps, last}`, or to a literal value. Without it the step gets the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub continue_on_error: bool,
}

/// What a configuration runs, with exactly the field its type needs.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionSpec {
    NativeCommand(String),
    CommandChain(Vec<ChainStepInput>),
    Code(String),
    StartProcess(i32),
}

impl ExecutionSpec {
    /// Every command it runs, with where it is named: what its saver must be allowed to run. A
    /// script's are the names it passes to `command()` as literals, and the commands behind
    /// `publish()` and `start_process()` when its source names them; a name computed at run time
    /// is checked when it runs, against the configuration's recorded authority.
    pub fn commands(&self) -> Vec<(String, String)> {
        match self {
            Self::NativeCommand(name) => vec![("commandName".into(), name.clone())],
            Self::CommandChain(steps) => steps
                .iter()
                .enumerate()
                .map(|(index, step)| (format!("commandChain[{index}].commandName"), step.command_name.clone()))
                .collect(),
            Self::Code(code) => {
                hookbus_script::commands_named(code).into_iter().map(|name| ("executionCode".into(), name)).collect()
            }
            Self::StartProcess(_) => vec![("processDefinitionId".into(), START_PROCESS.into())],
        }
    }

    pub fn execution_type(&self) -> ExecutionType {
        match self {
            Self::NativeCommand(_) => ExecutionType::NativeCommand,
            Self::CommandChain(_) => ExecutionType::CommandChain,
            Self::Code(_) => ExecutionType::Code,
            Self::StartProcess(_) => ExecutionType::StartProcess,
        }
    }
}

/// A configuration's fields, every rule checked.
#[derive(Debug, Clone)]
pub struct ConfigSpec {
    pub description: String,
    pub is_enabled: bool,
    pub path: HookPath,
    pub action: HttpMethod,
    pub execution: ExecutionSpec,
    pub allowable_ips: IpAllowList,
    pub idempotency_key: Option<IdempotencyKey>,
    pub respond_async: bool,
    pub idempotency_returns_result: bool,
}

/// Collects one message per failed rule.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<String>);

impl Problems {
    pub(crate) fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Records the error of `result`, if any, and passes its value on.
    pub(crate) fn check<T>(&mut self, result: Result<T, String>) -> Option<T> {
        result.map_err(|problem| self.push(problem)).ok()
    }

    pub(crate) fn into_result<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, CommandError> {
        match (self.0.is_empty(), value()) {
            (true, Some(value)) => Ok(value),
            (true, None) => Err(CommandError::validation("Configuration is invalid")),
            (false, _) => Err(CommandError::Validation(self.0)),
        }
    }
}

impl ConfigFields {
    /// Checks every rule, reporting all failures together. Unknown fields and the key (for
    /// update) are reported by the caller through `problems`.
    pub(crate) fn validate(self, scripts: &ScriptEngine, mut problems: Problems) -> Result<ConfigSpec, CommandError> {
        let ConfigFields {
            description,
            is_enabled,
            path,
            action,
            execution_type,
            command_name,
            command_chain,
            execution_code,
            process_definition_id,
            allowable_ips,
            idempotency_key,
            respond_async,
            idempotency_returns_result,
        } = self;

        let description = match description.as_deref().map(str::trim) {
            None | Some("") => {
                problems.push("Description is required");
                None
            }
            Some(text) if text.chars().count() > 1000 => {
                problems.push("Description must be at most 1000 characters");
                None
            }
            Some(text) => Some(text.to_owned()),
        };
        if is_enabled.is_none() {
            problems.push("IsEnabled is required");
        }
        let path = problems.check(HookPath::parse(path.as_deref().unwrap_or_default()));
        let action = problems.check(HttpMethod::parse(action.as_deref().unwrap_or_default()));
        let execution_type = problems
            .check(execution_type.ok_or_else(|| "ExecutionType is required".to_owned()))
            .and_then(|code| problems.check(ExecutionType::from_code(code)));

        let execution = execution_type.and_then(|kind| {
            let given = [
                (ExecutionType::NativeCommand, command_name.is_some()),
                (ExecutionType::CommandChain, command_chain.is_some()),
                (ExecutionType::Code, execution_code.is_some()),
                (ExecutionType::StartProcess, process_definition_id.is_some()),
            ];
            for (other, present) in given {
                if other != kind && present {
                    problems.push(format!(
                        "{} must not be given for executionType {} (it uses {})",
                        other.field(),
                        kind.code(),
                        kind.field()
                    ));
                }
            }
            match kind {
                ExecutionType::NativeCommand => match command_name {
                    None => missing(&mut problems, kind),
                    Some(name) => problems.check(routable_command(&name)).map(|()| ExecutionSpec::NativeCommand(name)),
                },
                ExecutionType::CommandChain => match command_chain {
                    None => missing(&mut problems, kind),
                    Some(steps) => validate_chain(&steps, &mut problems).then_some(ExecutionSpec::CommandChain(steps)),
                },
                ExecutionType::Code => match execution_code {
                    None => missing(&mut problems, kind),
                    Some(code) if code.trim().is_empty() => missing(&mut problems, kind),
                    Some(code) => match scripts.compile(&code) {
                        Ok(_) => Some(ExecutionSpec::Code(code)),
                        Err(e) => {
                            problems.push(format!(
                                "executionCode: syntax error at line {}, column {}: {}",
                                e.line, e.column, e.message
                            ));
                            None
                        }
                    },
                },
                ExecutionType::StartProcess => match process_definition_id {
                    None => missing(&mut problems, kind),
                    Some(id) => match i32::try_from(id) {
                        Ok(id) if id > 0 => Some(ExecutionSpec::StartProcess(id)),
                        _ => {
                            problems.push("processDefinitionId must be a positive integer");
                            None
                        }
                    },
                },
            }
        });

        let allowable_ips = match IpAllowList::parse(allowable_ips.as_deref().unwrap_or_default()) {
            Ok(list) => Some(list),
            Err(errors) => {
                errors.into_iter().for_each(|e| problems.push(format!("allowableIPs: {e}")));
                None
            }
        };
        let idempotency_key = match idempotency_key.as_deref().map(str::trim) {
            None | Some("") => Some(None),
            Some(text) => {
                problems.check(IdempotencyKey::parse(text).map_err(|e| format!("idempotencyKey: {e}"))).map(Some)
            }
        };

        problems.into_result(|| {
            Some(ConfigSpec {
                description: description?,
                is_enabled: is_enabled?,
                path: path?,
                action: action?,
                execution: execution?,
                allowable_ips: allowable_ips?,
                idempotency_key: idempotency_key?,
                respond_async: respond_async.unwrap_or(false),
                idempotency_returns_result: idempotency_returns_result.unwrap_or(false),
            })
        })
    }
}

fn missing(problems: &mut Problems, kind: ExecutionType) -> Option<ExecutionSpec> {
    problems.push(format!("{} is required for executionType {}", kind.field(), kind.code()));
    None
}

/// A command the router may run: registered, and not one that needs `admin` (the router's
/// principal never has it).
fn routable_command(name: &str) -> Result<(), String> {
    match hookbus_core::lookup(name) {
        None => Err(format!("commandName: '{name}' is not a registered command")),
        Some(info) if info.permission == Permission::Admin => {
            Err(format!("commandName: '{name}' requires admin and cannot be run by the router"))
        }
        Some(_) => Ok(()),
    }
}

/// Checks every step; returns whether all passed.
fn validate_chain(steps: &[ChainStepInput], problems: &mut Problems) -> bool {
    let before = problems.0.len();
    if steps.is_empty() {
        problems.push("commandChain must have at least one step");
    }
    if steps.len() > MAX_CHAIN_STEPS {
        problems.push(format!("commandChain may have at most {MAX_CHAIN_STEPS} steps"));
    }
    for (index, step) in steps.iter().enumerate() {
        if let Err(e) = routable_command(&step.command_name) {
            problems.push(format!("commandChain[{index}].{e}"));
        }
        for (field, value) in step.input.iter().flatten() {
            if let Value::String(path) = value
                && path.starts_with('$')
                && let Err(e) = parse_json_path(path)
            {
                problems.push(format!("commandChain[{index}].input.{field}: {e}"));
            }
        }
    }
    problems.0.len() == before
}
