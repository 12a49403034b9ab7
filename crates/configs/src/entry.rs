//! A configuration as the router uses it: every field parsed, the script compiled, once when the
//! configuration enters the cache, never per request.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use hookbus_core::{Delegation, Permission, PermissionSet, SharedJson};
use hookbus_script::{CompiledScript, ScriptEngine};

use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value;

use crate::{ChainStepInput, ExecutionType, HttpMethod, IdempotencyKey, IpAllowList, WebHookConfig, entity};

/// A configuration as the router runs it: one version of it, every field parsed once, when it
/// enters the cache. The stored row stays inside this crate.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub id: i32,
    pub key: String,
    pub path: String,
    /// Bumped on every change: an entry is one version.
    pub version: i32,
    pub is_enabled: bool,
    pub action: HttpMethod,
    pub execution: Execution,
    pub allow_list: IpAllowList,
    /// Where a request's unique id is, if the configuration deduplicates.
    pub idempotency: Option<IdempotencyRule>,
    /// Whether a repeat gets the first request's answer data.
    pub idempotency_returns_result: bool,
    /// Answer 202 at once and run from the queue.
    pub respond_async: bool,
    /// The authority its commands run with: its saver's.
    pub run_as: Delegation,
    /// The row, for the view the queries answer.
    row: entity::Model,
    /// The configuration as the queries answer it, built on first use (once per version).
    view: OnceLock<Arc<SharedJson>>,
}

/// What a configuration runs, ready to run.
#[derive(Debug, Clone)]
pub enum Execution {
    /// Type 0: this command, with the request body as its fields.
    NativeCommand(String),
    /// Type 1: these steps, their JSONPaths parsed.
    CommandChain(Vec<ChainStep>),
    /// Type 2: this script, compiled.
    Code(Arc<CompiledScript>),
    /// Type 3: an instance of this process definition.
    StartProcess(i32),
}

impl Execution {
    pub fn execution_type(&self) -> ExecutionType {
        match self {
            Self::NativeCommand(_) => ExecutionType::NativeCommand,
            Self::CommandChain(_) => ExecutionType::CommandChain,
            Self::Code(_) => ExecutionType::Code,
            Self::StartProcess(_) => ExecutionType::StartProcess,
        }
    }
}

impl ConfigEntry {
    /// The configuration as `GetWebHookConfigByIdQuery` answers it. Built once per version, tree
    /// and text: the router's type-0 routes ask for it on every request, and building it (the
    /// row's strings, its timestamps formatted), copying it or serializing it for the answer and
    /// the log each costs more than copying its text.
    pub fn view(&self) -> Result<Arc<SharedJson>, serde_json::Error> {
        if let Some(view) = self.view.get() {
            return Ok(Arc::clone(view));
        }
        let view = Arc::new(SharedJson::new(serde_json::to_value(WebHookConfig::from(self.row.clone()))?)?);
        Ok(Arc::clone(self.view.get_or_init(|| view)))
    }

    /// Parses every field of a stored row; its script is compiled with `scripts`.
    pub(crate) fn new(row: entity::Model, scripts: &ScriptEngine) -> Result<Self, CorruptConfig> {
        let corrupt = |problem: String| CorruptConfig { id: row.id, problem };
        let action = HttpMethod::parse(&row.action).map_err(corrupt)?;
        let execution = match ExecutionType::from_code(row.execution_type.into()).map_err(corrupt)? {
            ExecutionType::NativeCommand => {
                Execution::NativeCommand(row.command_name.clone().ok_or_else(|| corrupt("no commandName".into()))?)
            }
            ExecutionType::CommandChain => {
                let steps = row.command_chain.clone().ok_or_else(|| corrupt("no commandChain".into()))?;
                let steps: Vec<ChainStepInput> = serde_json::from_value(steps).map_err(|e| corrupt(e.to_string()))?;
                Execution::CommandChain(
                    steps.into_iter().map(ChainStep::parse).collect::<Result<_, _>>().map_err(corrupt)?,
                )
            }
            ExecutionType::Code => {
                let code = row.execution_code.as_deref().ok_or_else(|| corrupt("no executionCode".into()))?;
                Execution::Code(Arc::new(scripts.compile_script(code).map_err(|e| corrupt(e.to_string()))?))
            }
            ExecutionType::StartProcess => Execution::StartProcess(
                row.process_definition_id.ok_or_else(|| corrupt("no processDefinitionId".into()))?,
            ),
        };
        let allow_list = IpAllowList::parse(row.allowable_ips.as_deref().unwrap_or_default())
            .map_err(|errors| corrupt(errors.join("; ")))?;
        let idempotency = match row.idempotency_key.as_deref().map(IdempotencyKey::parse) {
            None => None,
            Some(Ok(IdempotencyKey::Header(name))) => Some(IdempotencyRule::Header(name)),
            Some(Ok(IdempotencyKey::JsonPath(path))) => Some(IdempotencyRule::Path(Box::new(
                jsonpath_rust::parser::parse_json_path(&path).map_err(|e| corrupt(e.to_string()))?,
            ))),
            Some(Err(problem)) => return Err(corrupt(problem)),
        };
        let run_as = match &row.run_as {
            Some(text) => Delegation::from_stored(text).map_err(corrupt)?,
            None => unrecorded_authority(),
        };
        Ok(Self {
            id: row.id,
            key: row.key.clone(),
            path: row.path.clone(),
            version: row.version,
            is_enabled: row.is_enabled,
            action,
            execution,
            allow_list,
            idempotency,
            idempotency_returns_result: row.idempotency_returns_result,
            respond_async: row.respond_async,
            run_as,
            row,
            view: OnceLock::new(),
        })
    }
}

/// One step of a command chain, its JSONPaths parsed.
#[derive(Debug, Clone)]
pub struct ChainStep {
    pub command_name: String,
    /// `None`: the step gets the request body.
    pub input: Option<BTreeMap<String, StepInput>>,
    pub continue_on_error: bool,
}

/// Where the router finds a request's unique id.
#[derive(Debug, Clone)]
pub enum IdempotencyRule {
    /// A lower-case header name.
    Header(String),
    /// A JSONPath into the body.
    Path(Box<JpQuery>),
}

/// A step's input field: a JSONPath over the chain's context, or a literal.
#[derive(Debug, Clone)]
pub enum StepInput {
    Path(Box<JpQuery>),
    Literal(Value),
}

/// A stored configuration whose fields no longer parse: only possible if the database was edited by
/// hand, since every field is checked when saved.
#[derive(Debug, thiserror::Error)]
#[error("stored configuration {id} is invalid: {problem}")]
pub struct CorruptConfig {
    pub id: i32,
    pub problem: String,
}

/// The authority of a configuration saved before authority was recorded: no owner, and no
/// permission beyond `router.internal_permissions`, which every delegation is narrowed to.
fn unrecorded_authority() -> Delegation {
    Delegation {
        permissions: PermissionSet::all().without(Permission::Admin),
        owner: None,
        saved_by: "unrecorded".into(),
    }
}

impl ChainStep {
    fn parse(step: ChainStepInput) -> Result<Self, String> {
        let ChainStepInput { command_name, input, continue_on_error } = step;
        let input = match input {
            None => None,
            Some(fields) => Some(
                fields
                    .into_iter()
                    .map(|(field, value)| match value {
                        Value::String(path) if path.starts_with('$') => jsonpath_rust::parser::parse_json_path(&path)
                            .map(|query| (field, StepInput::Path(Box::new(query))))
                            .map_err(|e| format!("'{path}': {e}")),
                        literal => Ok((field, StepInput::Literal(literal))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Self { command_name, input, continue_on_error })
    }
}
