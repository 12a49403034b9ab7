//! The functions scripts get: `command`, `publish`, `start_process`, `jsonpath`, hashes
//! and HMACs, base64, `constant_time_eq`, `now`, `log`, `reject`, `secret`.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rhai::{Dynamic, Engine, EvalAltResult, Map, Position};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::host::{HostFailure, redact_text, with_run};

/// The key that marks a thrown map as hookbus's own (from `reject` or a failed `command`).
pub(crate) const MARKER: &str = "$hookbus";

type Fallible<T> = Result<T, Box<EvalAltResult>>;

const NO_SLEEP: &str = "sleep is not available: a script must finish within its time limit";

pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_fn("command", command)
        .register_fn("jsonpath", jsonpath)
        .register_fn("hmac_sha256_hex", |key: &str, text: &str| hex::encode(hmac_sha256(key, text)))
        .register_fn("hmac_sha256_base64", |key: &str, text: &str| STANDARD.encode(hmac_sha256(key, text)))
        .register_fn("sha256_hex", |text: &str| hex::encode(Sha256::digest(text.as_bytes())))
        .register_fn("sha512_hex", |text: &str| hex::encode(Sha512::digest(text.as_bytes())))
        .register_fn("base64_encode", |text: &str| STANDARD.encode(text.as_bytes()))
        .register_fn("base64_decode", base64_decode)
        .register_fn("constant_time_eq", |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes())))
        .register_fn("now", || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .register_fn("log", |text: &str| {
            let (label, text, taken) = with_run(|run| {
                let text = redact_text(text, &run.revealed.borrow());
                let taken = run.host.log(&text);
                (run.label.clone(), text, taken)
            })
            .unwrap_or_else(|| (String::new(), text.to_owned(), false));
            if !taken {
                tracing::info!(target: "hookbus::script", script = %label, "{text}");
            }
        })
        .register_fn("secret", secret)
        .register_fn("reject", reject)
        // rhai's own `sleep` blocks the thread past any deadline: a script waits by failing.
        .register_fn("sleep", |_: rhai::INT| -> Fallible<()> { Err(NO_SLEEP.into()) })
        .register_fn("sleep", |_: rhai::FLOAT| -> Fallible<()> { Err(NO_SLEEP.into()) })
        .register_fn("start_process", start_process)
        .register_fn("publish", |name: &str, data: Dynamic| publish(name, data, Map::new()))
        .register_fn("publish", publish);
}

fn hmac_sha256(key: &str, text: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn base64_decode(text: &str) -> Fallible<String> {
    STANDARD
        .decode(text.trim())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("base64_decode: {e}").into())
}

fn jsonpath(value: Dynamic, path: &str) -> Fallible<Dynamic> {
    let query =
        jsonpath_rust::parser::parse_json_path(path).map_err(|e| format!("jsonpath: invalid path '{path}': {e}"))?;
    let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
    rhai::serde::to_dynamic(crate::select(&query, &json))
}

/// Ends the request with `status` and `message`.
fn reject(status: i64, message: &str) -> Fallible<Dynamic> {
    let mut thrown = Map::new();
    thrown.insert(MARKER.into(), "reject".into());
    thrown.insert("status".into(), status.into());
    thrown.insert("message".into(), message.into());
    Err(EvalAltResult::ErrorRuntime(thrown.into(), Position::NONE).into())
}

/// Starts an instance of process definition `id` with `variables`; returns `{instanceId, status}`.
fn start_process(id: i64, variables: Map) -> Fallible<Dynamic> {
    let mut fields = Map::new();
    fields.insert("id".into(), id.into());
    fields.insert("runtimeContext".into(), variables.into());
    command("StartProcessInstanceCommand", fields)
}

/// Publishes an outbound event through `PublishEventCommand` (the same path as the bus); `options`
/// may carry `resource`, `eventId` and `changedAttributes`. Returns `{eventId, notifications, ...}`.
fn publish(name: &str, data: Dynamic, options: Map) -> Fallible<Dynamic> {
    let mut fields = options;
    fields.insert("eventName".into(), name.into());
    fields.insert("data".into(), data);
    command("PublishEventCommand", fields)
}

/// The value of script secret `name`; a missing secret (or one the script may not read) is thrown
/// as a map, as a failed command is.
fn secret(name: &str) -> Fallible<String> {
    let outcome = with_run(|run| run.host.secret(name, run.deadline)).ok_or("secret: not available here")?;
    match outcome {
        Ok(value) => {
            with_run(|run| run.revealed.borrow_mut().push(value.clone()));
            Ok(value)
        }
        Err(failure) => Err(host_failure("secret", failure)),
    }
}

fn host_failure(what: &str, failure: HostFailure) -> Box<EvalAltResult> {
    match failure {
        HostFailure::Deadline => {
            EvalAltResult::ErrorTerminated(format!("timeout in {what}").into(), Position::NONE).into()
        }
        HostFailure::Command(error) => {
            let mut thrown = Map::new();
            thrown.insert(MARKER.into(), "command".into());
            thrown.insert("status".into(), i64::from(error.status).into());
            thrown.insert("message".into(), error.message.into());
            let errors: rhai::Array = error.errors.into_iter().map(Dynamic::from).collect();
            thrown.insert("errors".into(), errors.into());
            EvalAltResult::ErrorRuntime(thrown.into(), Position::NONE).into()
        }
    }
}

/// Runs a bus command and returns its data; its failure is thrown as a map with `status`,
/// `message` and `errors` (catchable with `try`/`catch`).
fn command(name: &str, fields: Map) -> Fallible<Dynamic> {
    let fields: serde_json::Value = rhai::serde::from_dynamic(&fields.into())?;
    let outcome = with_run(|run| run.host.command(name, fields, run.deadline)).ok_or("command: not available here")?;
    match outcome {
        Ok(data) => rhai::serde::to_dynamic(data),
        Err(failure) => Err(host_failure(&format!("command {name}"), failure)),
    }
}
