//! The `gateway` binary: config → bind → [`gateway::run`] until SIGTERM or
//! ctrl-c.

use anyhow::Context;
use clap::{CommandFactory, Parser};
use gateway::Config;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Bad values exit 2 with a clear message, whether clap or `validate` finds them.
    let config = Config::parse().validate().unwrap_or_else(|err| {
        Config::command()
            .error(clap::error::ErrorKind::ValueValidation, err)
            .exit()
    });
    gateway::telemetry::init_logging();
    let listener = gateway::listen(config.bind_addr)
        .with_context(|| format!("cannot listen on {}", config.bind_addr))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    gateway::run(listener, config, shutdown).await?;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal: draining");
    shutdown.cancel();
}
