//! The sandboxed rhai engine that runs admin-written scripts.
//!
//! One [`ScriptEngine`] is built at start-up and shared: router configurations compile their
//! `executionCode` through it when saved (so a syntax error is refused then, not at the first
//! request), and the router runs the compiled [`rhai::AST`]s. The engine has no file, network or
//! process access, no `eval` and no module imports; every resource it can consume has a limit.

mod helpers;
mod host;
mod run;
mod select;
mod threads;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;

pub use host::{HostError, HostFailure, ScriptHost, redact_text, redact_value};
pub use rhai::AST;
pub use run::ScriptError;
pub use select::select;
pub use threads::{ScriptThreadGone, ScriptThreads};

/// The limits a script runs under. Defaults stop `loop {}` well within a second.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScriptLimits {
    /// Operations one run may perform.
    pub max_operations: u64,
    /// Nesting of function calls.
    pub max_call_levels: usize,
    /// Nesting of expressions, when compiling.
    pub max_expr_depth: usize,
    /// Characters in one string.
    pub max_string_size: usize,
    /// Items in one array.
    pub max_array_size: usize,
    /// Entries in one object map.
    pub max_map_size: usize,
    /// Wall-clock time one run may take.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Router scripts running at once, each on a thread of its own; more wait their turn. A script
    /// blocked in `command()` holds its thread.
    pub threads: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 1 << 20,
            max_array_size: 10_000,
            max_map_size: 10_000,
            timeout: Duration::from_millis(500),
            threads: 8,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A script that does not compile, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct CompileError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// The shared, sandboxed engine. Cloning shares it.
#[derive(Debug, Clone)]
pub struct ScriptEngine {
    engine: Arc<rhai::Engine>,
    limits: ScriptLimits,
}

impl ScriptEngine {
    pub fn new(limits: ScriptLimits) -> Self {
        // `Engine::new` registers only the core language packages: rhai itself has no file,
        // network or process functions, and a missing module resolver makes `import` fail.
        let mut engine = rhai::Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_max_modules(0)
            .disable_symbol("eval")
            .disable_symbol("import")
            .disable_symbol("export");
        // The wall clock: checked every 256 operations against the running script's deadline.
        // The operations so far are kept for the run's report.
        engine.on_progress(|operations| {
            let expired = host::with_run(|run| {
                run.operations.set(operations);
                operations % 256 == 0 && Instant::now() > run.deadline
            });
            expired.unwrap_or(false).then(|| rhai::Dynamic::from("timeout"))
        });
        engine.on_print(|text| tracing::info!(target: "hookbus::script", "{text}"));
        engine.on_debug(|text, _, _| tracing::debug!(target: "hookbus::script", "{text}"));
        helpers::register(&mut engine);
        Self { engine: Arc::new(engine), limits }
    }

    pub fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    /// Compiles a script for running many times: the AST and the words of its source.
    pub fn compile_script(&self, source: &str) -> Result<CompiledScript, CompileError> {
        let ast = self.compile(source)?;
        let words = source
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(CompiledScript { ast, words })
    }

    /// Compiles a script, reporting a syntax error with its line and column.
    pub fn compile(&self, source: &str) -> Result<AST, CompileError> {
        self.engine.compile(source).map_err(|e| {
            let position = e.position();
            CompileError {
                message: e.err_type().to_string(),
                line: position.line().unwrap_or(0),
                column: position.position().unwrap_or(0),
            }
        })
    }

    pub fn engine(&self) -> &rhai::Engine {
        &self.engine
    }
}

/// A compiled script, and the words its source contains.
#[derive(Debug)]
pub struct CompiledScript {
    ast: AST,
    words: std::collections::HashSet<String>,
}

impl CompiledScript {
    pub fn ast(&self) -> &AST {
        &self.ast
    }

    /// Whether the source names `identifier` as a whole word anywhere (code, comment or string
    /// alike). A script can read a scope variable only by naming it (there is no `eval`), so an
    /// input it never names need not be built.
    pub fn mentions(&self, identifier: &str) -> bool {
        self.words.contains(identifier)
    }
}

/// The bus commands a script's source names: each `command("Name", ...)` with a literal name,
/// `PublishEventCommand` when it names `publish` and `StartProcessInstanceCommand` when it names
/// `start_process` (anywhere, comments included). A name computed at run time is not found here.
pub fn commands_named(source: &str) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("command") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "command".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let Some(args) = after.trim_start().strip_prefix('(') else { continue };
        let args = args.trim_start();
        let Some(quote) = args.chars().next().filter(|c| *c == '"' || *c == '`') else { continue };
        if let Some(end) = args[1..].find(quote) {
            names.insert(args[1..1 + end].to_owned());
        }
    }
    let words: std::collections::HashSet<&str> =
        source.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    if words.contains("publish") {
        names.insert("PublishEventCommand".to_owned());
    }
    if words.contains("start_process") {
        names.insert("StartProcessInstanceCommand".to_owned());
    }
    names.into_iter().collect()
}

/// The script secrets a script's source reads: each `secret("name")`. `Err` names a `secret(...)`
/// whose argument is not a literal name: every secret a script reads is known when it is saved.
pub fn secrets_named(source: &str) -> Result<Vec<String>, String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("secret") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "secret".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        // A call: `secret(` with nothing between (prose such as "a secret (…)" is not one).
        let Some(args) = after.strip_prefix('(') else { continue };
        let args = args.trim_start();
        let literal = args
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '`')
            .and_then(|quote| args[1..].find(quote).map(|end| (&args[1..1 + end], &args[2 + end..])));
        match literal {
            Some((name, tail)) if tail.trim_start().starts_with(')') => {
                names.insert(name.to_owned());
            }
            _ => return Err("secret() takes a literal name, e.g. secret(\"nibss-key\")".to_owned()),
        }
    }
    Ok(names.into_iter().collect())
}

impl Default for ScriptEngine {
    fn default() -> Self {
        Self::new(ScriptLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let engine = ScriptEngine::default();
        let error = engine.compile("let a = 1;\nlet b = ;").err();
        assert_eq!(error.as_ref().map(|e| (e.line, e.column)), Some((2, 9)));
    }

    #[test]
    fn eval_and_import_are_refused() {
        let engine = ScriptEngine::default();
        assert!(engine.compile(r#"eval("1 + 1")"#).is_err());
        assert!(engine.compile(r#"import "fs" as fs;"#).is_err());
        assert!(engine.compile("let x = 40 + 2; x").is_ok());
    }

    #[test]
    fn the_commands_a_script_names_are_found() {
        let source = r#"
            let x = command("GetWebHookConfigByIdQuery", #{id: 1});
            let y = command ( `LookupWebHookByKeyCommand` , #{});
            let name = "Dynamic"; let z = command(name, #{});
            my_command("NotThis", 1); publish("WB_Loan_Created", #{});
        "#;
        assert_eq!(
            commands_named(source),
            ["GetWebHookConfigByIdQuery", "LookupWebHookByKeyCommand", "PublishEventCommand"]
        );
        assert_eq!(commands_named("start_process(3, #{})"), ["StartProcessInstanceCommand"]);
    }

    #[test]
    fn a_compiled_script_knows_the_whole_words_of_its_source() {
        let engine = ScriptEngine::default();
        let script = engine.compile_script("let x = raw_body + body.amount; // nobody reads headers2").ok();
        let mentions = |word: &str| script.as_ref().is_some_and(|script| script.mentions(word));
        assert!(mentions("body") && mentions("raw_body") && mentions("amount"));
        assert!(!mentions("request") && !mentions("headers") && !mentions("bod"));
    }
}
