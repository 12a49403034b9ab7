//! Dry runs: a configuration (saved, active or not, or a draft) runs on a sample request exactly as
//! the router would run it, inside a unit of work that is always rolled back. The answer says what
//! the caller would have got and everything the route did on the way; nothing is delivered,
//! started or logged.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hookbus_configs::{ConfigCache, ConfigEntry, ConfigFields};
use hookbus_core::{Answered, CommandError, Context, Envelope, Handler, Permission, Reply, Services, register_command};
use hookbus_script::{redact_text, redact_value};
use hookbus_store::{Store, UnitOfWork};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{InboundRequest, Router, admit::admit_caller};

/// Runs a configuration on a sample request and answers what would have happened; every write is
/// rolled back. Give `id` (a saved configuration, active or not) or `config` (the fields of an
/// unsaved one, as `CreateWebHookConfigCommand` takes them, without `key`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestWebHookConfigCommand {
    #[serde(default)]
    pub id: Option<i32>,
    #[serde(default)]
    pub config: Option<ConfigFields>,
    /// The request to run it on.
    #[serde(default)]
    pub request: SampleRequest,
}

/// A request as a caller would send it; what is left out takes the configuration's own values.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampleRequest {
    /// Default: the configuration's `action`.
    #[serde(default)]
    pub method: Option<String>,
    /// Default: `/api/webhooks/<key>`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// The JSON body.
    #[serde(default)]
    pub body: Option<Value>,
    /// The body as sent, for signature checks: parsed as JSON when it is JSON. Default: `body`
    /// serialized.
    #[serde(default)]
    pub raw_body: Option<String>,
    /// Default: 127.0.0.1.
    #[serde(default)]
    pub ip: Option<IpAddr>,
}

/// What a dry run did.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// The HTTP status the caller would have got.
    pub status: u16,
    /// The body the caller would have got.
    pub response: Value,
    /// The configuration answers 202 at once and runs the request from the queue: the caller would
    /// have got 202, and `status` is the queued run's.
    pub respond_async: bool,
    /// The script's `log()` lines.
    pub logs: Vec<String>,
    /// Every command the route called, in order.
    pub commands: Vec<CalledCommand>,
    /// The events it would have published.
    pub events: Vec<Value>,
    /// The process instances it would have started.
    pub processes: Vec<Value>,
    pub duration_ms: u64,
    /// The script's operations (against `script.max_operations`); `null` for other types.
    pub script_operations: Option<u64>,
}

/// One command a dry run called.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CalledCommand {
    pub name: String,
    pub input: Value,
    pub success: bool,
    /// 200, or the failure's status.
    pub status: u16,
    pub message: String,
    /// The answer's data; `null` on failure.
    pub data: Value,
    /// The failure's errors.
    pub errors: Vec<String>,
    pub duration_ms: u64,
}

/// What a dry run's route does, recorded as it happens.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    calls: Mutex<Vec<CalledCommand>>,
    logs: Mutex<Vec<String>>,
    revealed: Mutex<Vec<String>>,
    operations: Mutex<Option<u64>>,
}

impl Recorder {
    pub(crate) fn called(
        &self,
        name: &str,
        input: &Map<String, Value>,
        result: &Result<Reply, CommandError>,
        took: Duration,
    ) {
        let (success, status, message, data, errors) = match result {
            Ok(reply) => (true, 200, reply.message.to_string(), reply.data.clone().into_value(), Vec::new()),
            Err(error) => (false, error.status(), error.message(), Value::Null, error.details()),
        };
        let call = CalledCommand {
            name: name.to_owned(),
            input: Value::Object(input.clone()),
            success,
            status,
            message,
            data,
            errors,
            duration_ms: millis(took),
        };
        lock(&self.calls).push(call);
    }

    pub(crate) fn log(&self, line: &str) -> bool {
        lock(&self.logs).push(line.to_owned());
        true
    }

    pub(crate) fn revealed(&self, value: &str) {
        lock(&self.revealed).push(value.to_owned());
    }

    pub(crate) fn operations(&self, operations: u64) {
        *lock(&self.operations) = Some(operations);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(took: Duration) -> u64 {
    u64::try_from(took.as_millis()).unwrap_or(u64::MAX)
}

impl Handler for TestWebHookConfigCommand {
    const PERMISSION: Permission = Permission::WebhooksWrite;
    type Answer = DryRun;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        // It runs a route: not from inside one, nor from a script waiting on a script thread.
        ctx.refuse_in_script("TestWebHookConfigCommand")?;
        let store = ctx.service::<Store>()?;
        store.refuse_in_unit("TestWebHookConfigCommand cannot run inside a routed request")?;
        let entry = match (self.id, &self.config) {
            (Some(id), None) => ctx
                .service::<ConfigCache>()?
                .by_id(id)
                .ok_or_else(|| CommandError::not_found("Dry run failed", "Configuration not found"))?,
            (None, Some(fields)) => Arc::new(hookbus_configs::draft_entry(ctx, fields.clone()).await?),
            _ => return Err(CommandError::validation("id or config: give exactly one")),
        };
        let request = self.request.inbound(&entry)?;

        let started = Instant::now();
        let recorder = Arc::new(Recorder::default());
        let router = ctx.service::<Router>()?;
        let result = match admit_caller(&entry, &request.method, request.ip) {
            Err(refused) => Err(refused),
            Ok(()) => {
                let unit = UnitOfWork::new(store);
                let mut local = Services::default();
                local.insert(store.within(&unit));
                local.insert(Arc::clone(&recorder));
                let route_ctx = Context::new(router.principal(&entry.run_as, "router"), Arc::clone(ctx.services()))
                    .with_local(local);
                let result = router.run(&entry, &request, route_ctx).await;
                // Whatever happened, nothing stays: no write, no delivery, no process.
                unit.rollback().await;
                result
            }
        };
        let duration_ms = millis(started.elapsed());
        let (status, response) = match &result {
            Ok(reply) => (200, serde_json::to_value(Envelope::from(reply.clone())).map_err(CommandError::internal)?),
            Err(error) => {
                (error.status(), serde_json::to_value(Envelope::from(error)).map_err(CommandError::internal)?)
            }
        };
        let commands = std::mem::take(&mut *lock(&recorder.calls));
        let of = |name: &'static str| -> Vec<Value> {
            commands.iter().filter(|call| call.name == name && call.success).map(|call| call.input.clone()).collect()
        };
        let events = of("PublishEventCommand");
        let processes = of("StartProcessInstanceCommand");
        let mut run = DryRun {
            status,
            response,
            respond_async: entry.respond_async,
            logs: std::mem::take(&mut *lock(&recorder.logs)),
            commands: commands.clone(),
            events,
            processes,
            duration_ms,
            script_operations: *lock(&recorder.operations),
        };
        run.redact(&lock(&recorder.revealed));
        let message = if result.is_ok() { "Dry run completed" } else { "Dry run completed; the route failed" };
        Answered::ok(run, message)
    }
}
register_command!("TestWebHookConfigCommand" => TestWebHookConfigCommand);

impl SampleRequest {
    fn inbound(&self, entry: &ConfigEntry) -> Result<InboundRequest, CommandError> {
        let (body, raw_body, body_from_raw) = match (&self.raw_body, &self.body) {
            (Some(_), Some(_)) => return Err(CommandError::validation("request: give body or rawBody, not both")),
            (Some(raw), None) => match serde_json::from_str::<Value>(raw) {
                Ok(parsed) => (parsed, raw.clone(), true),
                Err(_) => (Value::String(raw.clone()), raw.clone(), false),
            },
            (None, Some(body)) => (body.clone(), body.to_string(), false),
            (None, None) => (Value::Null, String::new(), false),
        };
        Ok(InboundRequest {
            key: entry.key.clone(),
            method: self.method.clone().unwrap_or_else(|| entry.action.as_str().to_owned()).to_uppercase(),
            path: self.path.clone().unwrap_or_else(|| format!("/api/webhooks/{}", entry.key)),
            query: self.query.clone(),
            headers: self.headers.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.clone())).collect(),
            ip: self.ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            body,
            raw_body,
            body_from_raw,
            received_at: hookbus_core::now(),
        })
    }
}

impl DryRun {
    /// No value a script read with `secret()` appears anywhere in the answer.
    fn redact(&mut self, revealed: &[String]) {
        if revealed.is_empty() {
            return;
        }
        let text = |text: &mut String| *text = redact_text(text, revealed);
        redact_value(&mut self.response, revealed);
        self.logs.iter_mut().for_each(text);
        for call in &mut self.commands {
            redact_value(&mut call.input, revealed);
            redact_value(&mut call.data, revealed);
            text(&mut call.message);
            call.errors.iter_mut().for_each(text);
        }
        self.events.iter_mut().chain(self.processes.iter_mut()).for_each(|event| redact_value(event, revealed));
    }
}
