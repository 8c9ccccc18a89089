use std::process::ExitCode;

use clap::Parser;
use tally::config::{Cli, Command, ServeSettings, reference};
use tally::{Application, healthcheck, server, telemetry};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(settings) => runtime().and_then(|rt| rt.block_on(serve(settings))),
        Command::Migrate(settings) => runtime().and_then(|rt| {
            rt.block_on(async {
                telemetry::init(&settings.log)?;
                let applied = server::migrate(&settings.store, settings.force).await?;
                tracing::info!(?applied, "migrations done");
                Ok(())
            })
        }),
        Command::Healthcheck(settings) => healthcheck::check(settings.listen, settings.timeout),
        Command::Config(settings) => {
            let text = if settings.markdown {
                reference::markdown()
            } else {
                reference::env_file()
            };
            print!("{text}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    telemetry::init(&settings.log)?;
    let app = Application::build(&settings)?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (TALLY_LISTEN): {e}", settings.listen))?;
    tracing::info!(listen = %settings.listen, "listening");
    app.serve(listener, shutdown_signal()).await
}

/// SIGTERM (docker stop, Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
