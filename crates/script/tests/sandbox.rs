//! The sandbox's limits and the helpers scripts get, on the real engine.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hookbus_script::{HostError, HostFailure, ScriptEngine, ScriptError, ScriptHost, ScriptLimits};
use serde_json::{Value, json};

/// Answers `echo` with its fields, waits for `slow` until the deadline, and fails everything else
/// with a 404.
struct EchoHost;

impl ScriptHost for EchoHost {
    fn command(&self, name: &str, fields: Value, deadline: Instant) -> Result<Value, HostFailure> {
        match name {
            "echo" => Ok(fields),
            "slow" => {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                Err(HostFailure::Deadline)
            }
            _ => Err(HostError { status: 404, message: "Not found".into(), errors: vec![format!("no {name}")] }.into()),
        }
    }

    fn secret(&self, name: &str, _deadline: Instant) -> Result<String, HostFailure> {
        match name {
            "nibss-key" => Ok("Sup3r-Secret-Value".into()),
            _ => Err(HostError { status: 404, message: "Secret not found".into(), errors: vec![name.into()] }.into()),
        }
    }
}

#[test]
fn a_secret_is_usable_but_never_in_the_value_or_the_errors() {
    let engine = ScriptEngine::default();
    let code = r#"let key = secret("nibss-key");
        let answer = #{ signature: hmac_sha256_hex(key, "body"), leaked: key, inside: "k=" + key };
        answer[key] = 1;
        answer"#;
    let (result, _) = run(&engine, code, Value::Null);
    let value = result.expect("the script runs");
    let text = value.to_string();
    assert!(!text.contains("Sup3r-Secret-Value"), "{text}");
    assert_eq!(value["leaked"], "***");
    assert_eq!(value["inside"], "k=***");
    assert_eq!(value["signature"].as_str().map(str::len), Some(64), "the secret itself was used");

    for code in [
        r#"throw "bad key " + secret("nibss-key")"#,
        r#"reject(401, "expected " + secret("nibss-key"))"#,
        r#"command("missing", #{ key: secret("nibss-key") })"#,
    ] {
        let (result, _) = run(&engine, code, Value::Null);
        let error = format!("{:?}", result.expect_err("the script fails"));
        assert!(!error.contains("Sup3r-Secret-Value"), "{code}: {error}");
    }
    let (result, _) = run(&engine, r#"secret("unknown")"#, Value::Null);
    assert!(matches!(result, Err(ScriptError::Command(HostError { status: 404, .. }))), "{result:?}");
}

#[test]
fn the_secrets_a_script_reads_are_known_from_its_source() {
    use hookbus_script::secrets_named;
    assert_eq!(
        secrets_named(r#"let a = secret("one"); let b = secret( `two` ); secret("one")"#),
        Ok(vec!["one".into(), "two".into()])
    );
    assert_eq!(secrets_named("// kept as a script secret (set once)\nlet x = 1;"), Ok(vec![]));
    assert_eq!(secrets_named("let no_secret_here = 1; my_secret(2)"), Ok(vec![]));
    assert!(secrets_named(r#"let name = "one"; secret(name)"#).is_err());
    assert!(secrets_named(r#"secret("a" + "b")"#).is_err());
}

fn run(engine: &ScriptEngine, code: &str, body: Value) -> (Result<Value, ScriptError>, Duration) {
    let ast = engine.compile(code).expect("the script compiles");
    let started = Instant::now();
    let result = engine.run(&ast, &[("body", &body)], Arc::new(EchoHost), "test");
    (result, started.elapsed())
}

#[track_caller]
fn assert_limit(code: &str, expected: &str) {
    let engine = ScriptEngine::default();
    let (result, took) = run(&engine, code, Value::Null);
    match result {
        Err(ScriptError::Limit(message)) => assert!(message.contains(expected), "{code}: {message}"),
        other => panic!("{code}: expected a limit error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(1), "{code} took {took:?}");
}

#[test]
fn an_endless_loop_stops_within_a_second() {
    assert_limit("loop {}", "");
}

#[test]
fn deep_recursion_stops() {
    assert_limit("fn down(n) { down(n + 1) } down(0)", "nested calls deeper than 32 levels");
}

#[test]
fn a_string_doubling_bomb_stops() {
    assert_limit(r#"let s = "xxxxxxxx"; loop { s += s; }"#, "limit on the length of strings");
}

#[test]
fn a_huge_array_stops() {
    assert_limit("let a = [0]; loop { a += a; }", "limit on the size of arrays");
}

#[test]
fn the_wall_clock_stops_a_script_under_its_operation_limit() {
    let engine = ScriptEngine::new(ScriptLimits {
        max_operations: u64::MAX / 2,
        timeout: Duration::from_millis(100),
        ..ScriptLimits::default()
    });
    let (result, took) = run(&engine, "let n = 0; loop { n += 1; }", Value::Null);
    assert_eq!(result, Err(ScriptError::Limit("the script ran longer than 100 ms".into())));
    assert!(took < Duration::from_millis(600), "{took:?}");
}

#[test]
fn sleep_fails_at_once_instead_of_outliving_the_deadline() {
    for code in ["sleep(3)", "sleep(2.5)", "try { sleep(3) } catch { 1 }; sleep(3)"] {
        let (result, took) = run(&ScriptEngine::default(), code, Value::Null);
        match result {
            Err(ScriptError::Failed(message)) => assert!(message.contains("sleep is not available"), "{message}"),
            other => panic!("{code}: expected a failure, got {other:?}"),
        }
        assert!(took < Duration::from_millis(200), "{code} took {took:?}");
    }
}

#[test]
fn waiting_for_a_command_counts_against_the_deadline_and_cannot_be_caught() {
    let engine = ScriptEngine::new(ScriptLimits { timeout: Duration::from_millis(150), ..ScriptLimits::default() });
    let code = r#"let n = 0; loop { try { command("slow", #{}) } catch { n += 1 } }"#;
    let (result, took) = run(&engine, code, Value::Null);
    assert_eq!(result, Err(ScriptError::Limit("the script ran longer than 150 ms".into())));
    assert!(took >= Duration::from_millis(150) && took < Duration::from_millis(600), "{took:?}");
}

#[test]
fn hashes_hmacs_and_base64() {
    let engine = ScriptEngine::default();
    // RFC 4231, test case 2.
    let (hmac, _) = run(&engine, r#"hmac_sha256_hex("Jefe", "what do ya want for nothing?")"#, Value::Null);
    assert_eq!(hmac, Ok(json!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")));
    let (b64, _) = run(&engine, r#"hmac_sha256_base64("Jefe", "what do ya want for nothing?")"#, Value::Null);
    assert_eq!(b64, Ok(json!("W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=")));
    let (sha, _) = run(&engine, r#"sha512_hex("abc")"#, Value::Null);
    assert_eq!(
        sha,
        Ok(json!(
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        ))
    );
    let (round, _) = run(&engine, r#"base64_decode(base64_encode("naïve ☕"))"#, Value::Null);
    assert_eq!(round, Ok(json!("naïve ☕")));
    let (eq, _) = run(
        &engine,
        r#"[constant_time_eq("abc", "abc"), constant_time_eq("abc", "abd"), constant_time_eq("a", "ab")]"#,
        Value::Null,
    );
    assert_eq!(eq, Ok(json!([true, false, false])));
}

#[test]
fn jsonpath_and_the_inputs_in_scope() {
    let engine = ScriptEngine::default();
    let body = json!({"items": [{"amount": 5}, {"amount": 7}], "ref": "T-1"});
    let (result, _) = run(
        &engine,
        r#"#{ amounts: jsonpath(body, "$.items[*].amount"), reference: jsonpath(body, "$.ref"), none: jsonpath(body, "$.nope") }"#,
        body,
    );
    assert_eq!(result, Ok(json!({"amounts": [5, 7], "reference": "T-1", "none": null})));
}

#[test]
fn reject_ends_the_run_with_a_status() {
    let engine = ScriptEngine::default();
    let (result, _) = run(&engine, r#"if body.ok != true { reject(401, "bad signature") } 1"#, json!({"ok": false}));
    assert_eq!(result, Err(ScriptError::Rejected { status: 401, message: "bad signature".into() }));
}

#[test]
fn command_returns_data_and_throws_failures() {
    let engine = ScriptEngine::default();
    let (ok, _) = run(&engine, r#"command("echo", #{ id: 7 }).id + 1"#, Value::Null);
    assert_eq!(ok, Ok(json!(8)));
    let (failed, _) = run(&engine, r#"command("missing", #{})"#, Value::Null);
    assert_eq!(
        failed,
        Err(ScriptError::Command(HostError {
            status: 404,
            message: "Not found".into(),
            errors: vec!["no missing".into()]
        }))
    );
    let script = r#"let status = 0; try { command("missing", #{}) } catch (e) { status = e.status; } status"#;
    let (caught, _) = run(&engine, script, Value::Null);
    assert_eq!(caught, Ok(json!(404)));
}

#[test]
fn throw_and_runtime_errors_fail_with_their_message() {
    let engine = ScriptEngine::default();
    let (thrown, _) = run(&engine, r#"throw "amount must be positive""#, Value::Null);
    assert!(matches!(thrown, Err(ScriptError::Failed(ref m)) if m.contains("amount must be positive")), "{thrown:?}");
    let (missing, _) = run(&engine, "no_such_function()", Value::Null);
    assert!(matches!(missing, Err(ScriptError::Failed(ref m)) if m.contains("no_such_function")), "{missing:?}");
}
