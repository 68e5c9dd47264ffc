//! `cartable-central`: the fleet side of Cartable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use cartable_protocol::desired::Body;
use clap::{Parser, Subcommand};

/// The fleet console: fleet key, signed desired state, fleet state and dashboard.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Broker {
    /// The fleet's MQTT broker, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Only this site (default: the whole fleet).
    #[arg(long)]
    site: Option<String>,
    /// Only this box of `--site`.
    #[arg(long = "box")]
    box_id: Option<String>,
    /// The fleet's private key.
    #[arg(long, default_value = "fleet.key")]
    key: PathBuf,
    /// The version to sign (default: milliseconds since 1970, so always newer).
    #[arg(long = "desired-version")]
    desired_version: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the fleet's Ed25519 signing key; print the public key to pin on each box.
    Keygen {
        /// Where to write the private key (PKCS#8, readable by its owner only).
        #[arg(long, default_value = "fleet.key")]
        out: PathBuf,
        /// Replace an existing key file (every box must then be re-pinned).
        #[arg(long)]
        force: bool,
    },
    /// Take in every box's state and events; serve the dashboard and the JSON API.
    Serve {
        #[command(flatten)]
        broker: Broker,
        /// Where fleet state and events are kept: a SQLite file, or
        /// `postgres://user@host/db` for large fleets.
        #[arg(long, default_value = "central.db")]
        database: String,
        /// The dashboard's address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// The MQTT client id; the broker keeps this session's messages while it is
        /// away, so keep it stable.
        #[arg(long, default_value = "cartable-central")]
        client_id: String,
    },
    /// Filter policies for the fleet, a site or a box.
    Policy {
        #[command(subcommand)]
        action: Publish,
    },
    /// The app and update catalogue for the fleet, a site or a box.
    Catalogue {
        #[command(subcommand)]
        action: Publish,
    },
}

#[derive(Subcommand)]
enum Publish {
    /// Sign FILE and leave it retained on the broker.
    Publish {
        /// Policies: JSON `{"policies": [...]}` or TOML `[[policy]]` tables;
        /// catalogue: JSON `{"items": [...]}`.
        file: PathBuf,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        broker: Broker,
    },
}

fn split_broker(b: &str) -> anyhow::Result<(String, u16)> {
    let b = b.strip_prefix("mqtt://").unwrap_or(b);
    let (host, port) = b
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("`{b}` is not host:port"))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port.parse()
            .map_err(|_| anyhow::anyhow!("`{port}` is not a port"))?,
    ))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        Command::Keygen { out, force } => {
            let public = cartable_central::keys::generate(&out, force)?;
            println!("private key written to {}", out.display());
            println!("fleet_public_key = \"{public}\"");
            Ok(())
        }
        Command::Serve {
            broker,
            database,
            listen,
            client_id,
        } => {
            let (host, port) = split_broker(&broker.broker)?;
            rt.block_on(async move {
                let listener = cartable_central::serve::bind(listen).await?;
                eprintln!("dashboard on http://{}", listener.local_addr()?);
                let shutdown = tokio_util::sync::CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("SIGTERM handler");
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                    stop.cancel();
                });
                cartable_central::serve::run(
                    listener,
                    cartable_central::serve::ServeConfig {
                        broker_host: host,
                        broker_port: port,
                        client_id,
                        database,
                    },
                    shutdown,
                )
                .await
            })
        }
        Command::Policy {
            action:
                Publish::Publish {
                    file,
                    target,
                    broker,
                },
        } => {
            let policies = cartable_central::publish::read_policies(&file)?;
            publish(Body::Policies(policies), target, broker, &rt)
        }
        Command::Catalogue {
            action:
                Publish::Publish {
                    file,
                    target,
                    broker,
                },
        } => {
            let catalogue = cartable_central::publish::read_catalogue(&file)?;
            publish(Body::Catalogue(catalogue), target, broker, &rt)
        }
    }
}

fn publish(
    body: Body,
    target: Target,
    broker: Broker,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let (host, port) = split_broker(&broker.broker)?;
    let scope = cartable_central::publish::scope(target.site, target.box_id)?;
    let (topic, version) = rt.block_on(cartable_central::publish::publish(
        &target.key,
        &host,
        port,
        scope,
        body,
        target.desired_version,
    ))?;
    println!("published version {version} on {topic} (retained)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
