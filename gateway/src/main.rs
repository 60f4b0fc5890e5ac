//! The `gateway` binary: config → [`gateway::start`] → bind →
//! [`gateway::serve`] until SIGTERM or ctrl-c.

use anyhow::Context;
use clap::{CommandFactory, Parser};
use gateway::Config;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gateway::telemetry::init_logging();
    let shutdown = CancellationToken::new();
    // The configuration is checked once, by `start`: bad values exit 2 with
    // a clear message, whether clap or the check finds them.
    let state = match gateway::start(Config::parse(), shutdown.clone()) {
        Ok(state) => state,
        Err(gateway::GatewayError::Config(err)) => Config::command()
            .error(clap::error::ErrorKind::ValueValidation, err)
            .exit(),
        Err(gateway::GatewayError::PublishKey(err)) => Config::command()
            .error(clap::error::ErrorKind::ValueValidation, err)
            .exit(),
        Err(err) => return Err(err.into()),
    };
    let addr = state.bind_addr();
    let listener = gateway::listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
    tokio::spawn(stop_on_signal(shutdown));
    gateway::serve(listener, state).await?;
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
