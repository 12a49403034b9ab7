//! The command line: `serve` (the default), `migrate`, `token create`, `cmd`, `reference`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookbus_core::{Permission, Timestamp, error_chain};
use hookbus_tokens::NewToken;
use uuid::Uuid;

use crate::{Application, Settings, telemetry};

#[derive(Debug, Parser)]
#[command(name = "hookbus", version, about = "A webhook hub: command bus, inbound router, outbound delivery")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API tokens directly in the database.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Post a command to a running server and print the envelope.
    Cmd {
        /// The command, e.g. '{"$type": "GetWebHookConfigListQuery"}'.
        json: String,
        /// The server's base URL.
        #[arg(long, env = "HOOKBUS_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Bearer token.
        #[arg(long, env = "HOOKBUS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Print the command reference (markdown): every command's fields, permission and answer.
    Reference,
    /// Print the OpenAPI 3.1 document (JSON) with the built-in events.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Issue a token and print it (the only time it is shown).
    Create {
        #[arg(long)]
        name: String,
        /// A permission, e.g. webhooks:write; repeat for more.
        #[arg(long = "permission", required = true, value_parser = parse_permission)]
        permissions: Vec<Permission>,
        /// Bind the token to a partner (GUID).
        #[arg(long)]
        partner_id: Option<Uuid>,
        /// Bind the token to a customer.
        #[arg(long)]
        customer_id: Option<String>,
        /// RFC 3339 expiry, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<Timestamp>,
    },
}

fn parse_permission(text: &str) -> Result<Permission, String> {
    Permission::parse(text).ok_or_else(|| {
        let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown permission '{text}' (one of {})", known.join(", "))
    })
}

/// Parses the arguments and runs the chosen command.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Cmd { json, url, token }) = cli.command {
        return post_command(&url, token.as_deref(), json).await;
    }
    if let Some(Command::Reference) = cli.command {
        print!("{}", crate::reference::commands_markdown());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Openapi) = cli.command {
        let document = crate::openapi::document(&hookbus_outbound::catalog::built_ins());
        match serde_json::to_string_pretty(&document) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("hookbus: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("hookbus: {e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log);
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Token { action: TokenAction::Create { name, permissions, partner_id, customer_id, expires_at } } => {
            create_token(&settings, NewToken::parse(name, &permissions, partner_id, customer_id, expires_at)).await
        }
        Command::Cmd { .. } | Command::Reference | Command::Openapi => Ok(()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hookbus: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs until SIGTERM or SIGINT, then stops gracefully.
async fn serve(settings: Settings) -> Result<(), String> {
    let app = Application::build(settings).await.map_err(|e| error_chain(&e))?;
    tracing::info!(addr = %app.local_addr(), "hookbus listening");
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    shutdown_signal().await;
    tracing::info!("stopping: finishing in-flight requests");
    handle.stop(true).await;
    match server.await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
}

async fn migrate(settings: &Settings) -> Result<(), String> {
    let db = hookbus_store::connect(&settings.database.url, 1).await.map_err(|e| error_chain(&e))?;
    hookbus_store::migrate(&db).await.map_err(|e| error_chain(&e))?;
    println!("migrations applied");
    Ok(())
}

async fn create_token(settings: &Settings, new: Result<NewToken, hookbus_core::CommandError>) -> Result<(), String> {
    let new = new.map_err(|e| e.details().join("; "))?;
    let db = hookbus_store::connect(&settings.database.url, 1).await.map_err(|e| error_chain(&e))?;
    hookbus_store::migrate(&db).await.map_err(|e| error_chain(&e))?;
    let issued = hookbus_tokens::issue_token(&db, new).await.map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string_pretty(&issued).map_err(|e| e.to_string())?);
    Ok(())
}

/// Posts to `/api/bpm/cmd`; exits non-zero unless the envelope says success.
async fn post_command(url: &str, token: Option<&str>, json: String) -> ExitCode {
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("{}/api/bpm/cmd", url.trim_end_matches('/')))
        .header("content-type", "application/json")
        .body(json);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            eprintln!("hookbus: cannot reach {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let pretty = serde_json::from_str::<serde_json::Value>(&body)
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or(body);
    println!("{pretty}");
    if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
