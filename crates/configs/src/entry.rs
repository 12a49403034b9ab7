//! A configuration as the router uses it: the stored row plus the parsed forms of its fields, built
//! once when the configuration enters the cache, never per request.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use hookbus_core::{Delegation, Permission, PermissionSet, SharedJson};
use hookbus_script::{CompileError, CompiledScript, ScriptEngine};

use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value;

use crate::{ChainStepInput, ExecutionType, HttpMethod, IdempotencyKey, IpAllowList, WebHookConfig, entity};

/// A cached configuration.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub model: entity::Model,
    pub action: HttpMethod,
    pub execution_type: ExecutionType,
    pub allow_list: IpAllowList,
    /// For type 1.
    pub chain: Vec<ChainStep>,
    /// Where a request's unique id is, if the configuration deduplicates.
    pub idempotency: Option<IdempotencyRule>,
    /// The authority its commands run with: its saver's.
    pub run_as: Delegation,
    /// For type 2: compiled on first use. An entry is one version of a configuration, so this is
    /// one compilation per version.
    script: OnceLock<Arc<CompiledScript>>,
    /// The configuration as the queries answer it, built on first use (once per version).
    view: OnceLock<Arc<SharedJson>>,
}

impl ConfigEntry {
    /// The compiled script of a type-2 configuration.
    pub fn compiled_script(&self, engine: &ScriptEngine) -> Result<Arc<CompiledScript>, CompileError> {
        if let Some(script) = self.script.get() {
            return Ok(Arc::clone(script));
        }
        let script = Arc::new(engine.compile_script(self.model.execution_code.as_deref().unwrap_or_default())?);
        // Two first requests may both compile; either result is the same.
        Ok(Arc::clone(self.script.get_or_init(|| script)))
    }

    /// The configuration as `GetWebHookConfigByIdQuery` answers it. Built once per version, tree
    /// and text: the router's type-0 routes ask for it on every request, and building it (the
    /// row's strings, its timestamps formatted), copying it or serializing it for the answer and
    /// the log each costs more than copying its text.
    pub fn view(&self) -> Result<Arc<SharedJson>, serde_json::Error> {
        if let Some(view) = self.view.get() {
            return Ok(Arc::clone(view));
        }
        let view = Arc::new(SharedJson::new(serde_json::to_value(WebHookConfig::from(self.model.clone()))?)?);
        Ok(Arc::clone(self.view.get_or_init(|| view)))
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

impl TryFrom<entity::Model> for ConfigEntry {
    type Error = CorruptConfig;

    fn try_from(model: entity::Model) -> Result<Self, CorruptConfig> {
        let corrupt = |problem: String| CorruptConfig { id: model.id, problem };
        let action = HttpMethod::parse(&model.action).map_err(corrupt)?;
        let execution_type = ExecutionType::from_code(model.execution_type.into()).map_err(corrupt)?;
        let allow_list = IpAllowList::parse(model.allowable_ips.as_deref().unwrap_or_default())
            .map_err(|errors| corrupt(errors.join("; ")))?;
        let chain = match &model.command_chain {
            Some(steps) => {
                let steps: Vec<ChainStepInput> =
                    serde_json::from_value(steps.clone()).map_err(|e| corrupt(e.to_string()))?;
                steps.into_iter().map(ChainStep::parse).collect::<Result<_, _>>().map_err(corrupt)?
            }
            None => Vec::new(),
        };
        let idempotency = match model.idempotency_key.as_deref().map(IdempotencyKey::parse) {
            None => None,
            Some(Ok(IdempotencyKey::Header(name))) => Some(IdempotencyRule::Header(name)),
            Some(Ok(IdempotencyKey::JsonPath(path))) => Some(IdempotencyRule::Path(Box::new(
                jsonpath_rust::parser::parse_json_path(&path).map_err(|e| corrupt(e.to_string()))?,
            ))),
            Some(Err(problem)) => return Err(corrupt(problem)),
        };
        let run_as = match &model.run_as {
            Some(text) => Delegation::from_stored(text).map_err(corrupt)?,
            None => unrecorded_authority(),
        };
        Ok(Self {
            model,
            run_as,
            action,
            execution_type,
            allow_list,
            chain,
            idempotency,
            script: OnceLock::new(),
            view: OnceLock::new(),
        })
    }
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
