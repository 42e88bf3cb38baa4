//! The `feedmesh` binary: parses the command line and runs it.

use clap::Parser;
use feedmesh::cli::{Cli, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FEEDMESH_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    feedmesh::net::install_crypto();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feedmesh: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
