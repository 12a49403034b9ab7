use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    hookbus_server::cli::run().await
}
