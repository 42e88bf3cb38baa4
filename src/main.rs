//! The `feedmesh` binary: parses the command line and runs it.

use clap::Parser;
use feedmesh::cli::{Cli, run};

/// mimalloc: the WebSub fan-out allocates and frees many small buffers across threads, where
/// glibc's per-thread arenas grew and shrank (an mprotect every other delivery).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // An agent does little computing and much waiting on one disk and one hub: one thread
    // spares it the wake-ups between worker threads that cost more than its work.
    let runtime = match cli.command {
        feedmesh::cli::Command::Agent(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    match runtime {
        Ok(rt) => rt.block_on(start(cli)),
        Err(e) => {
            eprintln!("feedmesh: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> std::process::ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FEEDMESH_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    // Colours only for a terminal (and not with NO_COLOR): a log piped to a file or a
    // journal stays plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    feedmesh::net::install_crypto();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feedmesh: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
