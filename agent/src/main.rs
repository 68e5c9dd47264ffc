//! `cartable-agent`: the reference tablet agent, for demos and tests.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A tablet in software: enrol with a code, then stay connected and obey the hub.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol with a one-use code from the admin; prints the device's token.
    Enrol {
        /// The box's web address, host:port.
        #[arg(long = "box", default_value = "127.0.0.1:8080")]
        box_addr: SocketAddr,
        #[arg(long)]
        code: String,
    },
    /// Stay connected (reconnecting every few seconds) and print each change.
    Run {
        #[arg(long = "box", default_value = "127.0.0.1:8080")]
        box_addr: SocketAddr,
        #[arg(long, env = "CARTABLE_AGENT_TOKEN")]
        token: String,
    },
}

/// Prints the device's state each time it changes, and each one-shot action as it is
/// carried out (the view is read four times a second: a person is reading).
async fn print_changes(view: cartable_agent::Shared) {
    let mut shown: Option<String> = None;
    let mut done = 0;
    let mut connected = None;
    loop {
        let (state, actions, online) = {
            let v = view.lock().unwrap_or_else(|e| e.into_inner());
            (
                format!("{:?}", v.state),
                v.done[done.min(v.done.len())..].to_vec(),
                v.connected,
            )
        };
        if connected != Some(online) {
            println!("{}", if online { "connected" } else { "disconnected" });
            connected = Some(online);
        }
        if shown.as_deref() != Some(state.as_str()) {
            println!("state {state}");
            shown = Some(state);
        }
        for a in actions {
            println!("done {a}");
            done += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match Cli::parse().command {
            Command::Enrol { box_addr, code } => {
                let (id, token) = cartable_agent::enrol(box_addr, &code, "cartable-agent").await?;
                println!("device {id}");
                println!("token {token}");
                Ok(())
            }
            Command::Run { box_addr, token } => {
                let url = format!("ws://{box_addr}/api/v1/devices/ws");
                let view = cartable_agent::Shared::default();
                let stop = tokio_util::sync::CancellationToken::new();
                tokio::spawn(print_changes(view.clone()));
                loop {
                    match cartable_agent::run_once(&url, &token, None, view.clone(), stop.clone())
                        .await
                    {
                        Ok(()) => tracing::info!("the hub closed the connection"),
                        Err(e) => tracing::warn!(error = format!("{e:#}"), "connection failed"),
                    }
                    let v = view.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if v.revoked {
                        anyhow::bail!("this device's token was revoked");
                    }
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
