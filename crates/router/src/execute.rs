use std::{sync::Arc, time::Instant};

use hookbus_configs::{ChainStep, ConfigEntry, Execution, StepInput};
use hookbus_core::{
    CommandError, Context, Delegation, Permission, PermissionSet, Principal, Reply, Services, parse_named_command,
    run_command,
};
use hookbus_script::{CompiledScript, HostError, HostFailure, ScriptEngine, ScriptError, ScriptHost, ScriptThreads};
use hookbus_store::{Store, UnitOfWork};
use serde_json::{Map, Value, json};

use crate::{InboundRequest, dry_run::Recorder};

/// Runs configurations' handlers on the bus.
#[derive(Debug, Clone)]
pub struct Router {
    /// `router.internal_permissions`: the most any route or process may do, whoever saved it.
    ceiling: PermissionSet,
}

impl Router {
    /// `ceiling` bounds what every route and process may do (`admin` is never granted, whatever
    /// the configuration says).
    pub fn new(ceiling: PermissionSet) -> Self {
        Self { ceiling: ceiling.without(Permission::Admin) }
    }

    /// The principal that the commands of something saved with `run_as` run as: the saver's
    /// permissions within the ceiling, bound to the saver's owner.
    pub fn principal(&self, run_as: &Delegation, subject: &'static str) -> Principal {
        run_as.principal(self.ceiling, subject)
    }

    /// Runs `entry`'s handler for an admitted request, with the authority its saver had.
    pub async fn execute(
        &self,
        entry: &ConfigEntry,
        request: &InboundRequest,
        services: &Arc<Services>,
    ) -> Result<Reply, CommandError> {
        // One unit of work: what the request's commands write commits if it succeeds and is
        // rolled back if it fails.
        let store = services.get::<Store>()?;
        let unit = UnitOfWork::new(store);
        let mut local = Services::default();
        local.insert(store.within(&unit));
        let ctx = Context::new(self.principal(&entry.run_as, "router"), Arc::clone(services)).with_local(local);
        let result = self.run(entry, request, ctx).await;
        match result {
            Ok(reply) => match unit.commit().await {
                Ok(()) => Ok(reply),
                Err(error) => Err(CommandError::internal(error)),
            },
            Err(error) => {
                unit.rollback().await;
                Err(error)
            }
        }
    }

    /// Runs the handler in `ctx`, which the caller has set in a unit of work.
    pub(crate) async fn run(
        &self,
        entry: &ConfigEntry,
        request: &InboundRequest,
        ctx: Context,
    ) -> Result<Reply, CommandError> {
        // `ctx` moves into a script's host; the other types borrow it.
        match &entry.execution {
            Execution::NativeCommand(name) => run_named(name, &request.body, &ctx).await,
            Execution::CommandChain(steps) => run_chain(steps, request, &ctx).await,
            Execution::Code(script) => run_script(script, &entry.key, request, ctx).await,
            // Through the bus, like any command: the router needs no process engine of its own.
            Execution::StartProcess(id) => {
                let fields = json!({"id": id, "runtimeContext": request.body});
                run_named("StartProcessInstanceCommand", &fields, &ctx).await
            }
        }
    }
}

/// Runs the command `name` with `fields` (a JSON object, or nothing) as its fields.
pub async fn run_named(name: &str, fields: &Value, ctx: &Context) -> Result<Reply, CommandError> {
    let no_fields = Map::new();
    let fields = match fields {
        Value::Object(fields) => fields,
        Value::Null => &no_fields,
        other => {
            return Err(CommandError::validation(format!(
                "body: the fields of {name} must be a JSON object, not {}",
                json_kind(other)
            )));
        }
    };
    let Some(recorder) = ctx.local::<Arc<Recorder>>() else {
        let command = parse_named_command(name, fields)?;
        return run_command(command.as_ref(), ctx).await;
    };
    let started = Instant::now();
    let result = match parse_named_command(name, fields) {
        Ok(command) => run_command(command.as_ref(), ctx).await,
        Err(error) => Err(error),
    };
    recorder.called(name, fields, &result, started.elapsed());
    result
}

/// Runs the steps in order over the context `{request, body, steps, last}`.
async fn run_chain(steps: &[ChainStep], request: &InboundRequest, ctx: &Context) -> Result<Reply, CommandError> {
    let mut context = json!({
        "request": serde_json::to_value(request).map_err(CommandError::internal)?,
        "body": request.body,
        "steps": [],
        "last": null,
    });
    for (index, step) in steps.iter().enumerate() {
        let input = match &step.input {
            None => request.body.clone(),
            Some(fields) => {
                Value::Object(fields.iter().map(|(field, input)| (field.clone(), resolve(input, &context))).collect())
            }
        };
        let output = match run_named(&step.command_name, &input, ctx).await {
            Ok(reply) => reply.data.into_value(),
            Err(error) if step.continue_on_error => json!({ "error": error.summary() }),
            Err(error) => {
                return Err(CommandError::Wrapped {
                    message: format!("Step {index} ({}) failed", step.command_name),
                    inner: Box::new(error),
                });
            }
        };
        // The outputs live once, in the context the next steps' JSONPaths read.
        context["last"] = output.clone();
        if let Value::Array(outputs) = &mut context["steps"] {
            outputs.push(output);
        }
    }
    Reply::new(json!({"steps": context["steps"].take(), "result": context["last"].take()}), "Command chain completed")
}

/// A step input's value: a literal as is, or what its JSONPath selects.
fn resolve(input: &StepInput, context: &Value) -> Value {
    match input {
        StepInput::Literal(value) => value.clone(),
        StepInput::Path(query) => hookbus_script::select(query, context),
    }
}

/// Runs a type-2 script on a script thread, so that a slow script cannot stall the request
/// threads; its `command()` calls come back to the bus through [`BusHost`].
async fn run_script(
    script: &Arc<CompiledScript>,
    key: &str,
    request: &InboundRequest,
    ctx: Context,
) -> Result<Reply, CommandError> {
    let engine_services = Arc::clone(ctx.services());
    let script = Arc::clone(script);
    // Only what the script names: building and converting the others cost more than running a
    // short script.
    let mut inputs = Vec::with_capacity(6);
    let mut input = |name: &'static str, value: &dyn Fn() -> Result<Value, CommandError>| {
        if script.mentions(name) {
            inputs.push((name, value()?));
        }
        Ok::<_, CommandError>(())
    };
    input("request", &|| serde_json::to_value(request).map_err(CommandError::internal))?;
    input("body", &|| Ok(request.body.clone()))?;
    input("raw_body", &|| Ok(Value::String(request.raw_body.clone())))?;
    input("headers", &|| Ok(json!(request.headers)))?;
    input("query", &|| Ok(json!(request.query)))?;
    input("ip", &|| Ok(Value::String(request.ip.to_string())))?;
    let threads = ctx.service::<ScriptThreads>()?.clone();
    let host = Arc::new(BusHost::new(ctx));
    let label = key.to_owned();
    let outcome = threads
        .run(move || {
            let engine = engine_services.get::<ScriptEngine>()?;
            let inputs: Vec<(&str, &Value)> = inputs.iter().map(|(name, value)| (*name, value)).collect();
            Ok::<_, CommandError>(engine.run(script.ast(), &inputs, host, &label))
        })
        .await
        .map_err(CommandError::internal)??;
    match outcome {
        Ok(data) => Ok(Reply { data: data.into(), message: "Script executed successfully".into() }),
        Err(error) => Err(script_error(error)),
    }
}

/// A script's failure as a client-facing error.
pub fn script_error(error: ScriptError) -> CommandError {
    let failed = |status: u16, detail: String| CommandError::Rejected {
        status,
        message: "Script failed".into(),
        errors: vec![detail],
    };
    match error {
        ScriptError::Rejected { status, message } => CommandError::Rejected { status, message, errors: Vec::new() },
        ScriptError::Command(HostError { status, message, errors }) => {
            CommandError::Rejected { status, message, errors }
        }
        // The script broke a limit: its author's problem, not the caller's.
        ScriptError::Limit(detail) => failed(500, detail),
        // `throw` or a runtime error, usually over the caller's payload.
        ScriptError::Failed(detail) => failed(422, detail),
    }
}

/// Lets a script run bus commands: blocks its thread on the runtime the request came from, until
/// the command is done or the script's deadline has passed.
#[derive(Debug)]
pub struct BusHost {
    runtime: tokio::runtime::Handle,
    ctx: Context,
    /// A dry run's record, which takes the script's log lines and operations too.
    recorder: Option<Arc<Recorder>>,
}

impl BusHost {
    /// A host for scripts started from the current runtime, running commands as `ctx` (marked as
    /// called from a script).
    pub fn new(ctx: Context) -> Self {
        let recorder = ctx.local::<Arc<Recorder>>().cloned();
        Self { runtime: tokio::runtime::Handle::current(), ctx: ctx.for_script(), recorder }
    }
}

impl ScriptHost for BusHost {
    fn command(&self, name: &str, fields: Value, deadline: Instant) -> Result<Value, HostFailure> {
        // The timer is made inside the runtime: a script thread has none of its own.
        let run = async { tokio::time::timeout_at(deadline.into(), run_named(name, &fields, &self.ctx)).await };
        match self.runtime.block_on(run) {
            Ok(Ok(reply)) => Ok(reply.data.into_value()),
            Ok(Err(error)) => {
                Err(HostError { status: error.status(), message: error.message(), errors: error.details() }.into())
            }
            Err(_elapsed) => Err(HostFailure::Deadline),
        }
    }

    fn secret(&self, name: &str, deadline: Instant) -> Result<String, HostFailure> {
        let refused = |status: u16, message: &str, detail: String| -> HostFailure {
            HostError { status, message: message.into(), errors: vec![detail] }.into()
        };
        if !self.ctx.principal.permissions.allows(Permission::SecretsRead) {
            return Err(refused(
                403,
                "Forbidden",
                "secret: this script's authority does not include secrets:read".into(),
            ));
        }
        let read =
            async { tokio::time::timeout_at(deadline.into(), hookbus_configs::secrets::reveal(&self.ctx, name)).await };
        match self.runtime.block_on(read) {
            Ok(Ok(Some(value))) => {
                if let Some(recorder) = &self.recorder {
                    recorder.revealed(&value);
                }
                Ok(value)
            }
            Ok(Ok(None)) => Err(refused(404, "Secret not found", format!("secret: no secret named '{name}'"))),
            Ok(Err(error)) => Err(refused(error.status(), &error.message(), error.details().join("; "))),
            Err(_elapsed) => Err(HostFailure::Deadline),
        }
    }

    fn log(&self, line: &str) -> bool {
        self.recorder.as_ref().is_some_and(|recorder| recorder.log(line))
    }

    fn finished(&self, operations: u64) {
        if let Some(recorder) = &self.recorder {
            recorder.operations(operations);
        }
    }
}

/// How a JSON value is named in messages: "a string", "an object", ...
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
