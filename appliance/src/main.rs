//! The `cartable` command: parses the command line and calls into the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use cartable::app::App;
use cartable::config::Config;
use cartable::store::school;
use cartable::{demo, logging, status_client};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Cartable: a school's box that filters the web, caches apps, hosts the classroom hub
/// and keeps working when the uplink is down.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon with a configuration file (what systemd starts).
    Run {
        /// The TOML configuration; see appliance/config/example.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the daemon with built-in defaults on loopback, with a demo school seeded.
    Demo {
        /// Where the DNS server would listen (UDP and TCP).
        #[arg(long, default_value = demo::DEFAULT_DNS)]
        dns: SocketAddr,
        /// Where the web server listens.
        #[arg(long, default_value = demo::DEFAULT_HTTP)]
        http: SocketAddr,
        /// Keep the data here instead of a temporary folder removed at exit.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check a configuration file: exit 0 if valid, else print every problem and exit 2.
    CheckConfig {
        /// The TOML configuration to check.
        file: PathBuf,
    },
    /// Ask a running daemon for its state.
    Status {
        /// The daemon's HTTP address.
        #[arg(long, default_value = demo::DEFAULT_HTTP, conflicts_with = "config")]
        http: SocketAddr,
        /// Take the HTTP address from this configuration instead.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the raw JSON report.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        command => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run_async(command)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

async fn run_async(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => {
            logging::init("info");
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let app = App::build(config)?;
            app.run(shutdown_on_signal()?, || {}).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            dns,
            http,
            data_dir,
        } => {
            logging::init("info");
            let (data_dir, _temp) = match data_dir {
                Some(d) => (d, None),
                None => {
                    let t = tempfile::Builder::new()
                        .prefix("cartable-demo-")
                        .tempdir()
                        .context("creating a temporary data folder")?;
                    (t.path().to_path_buf(), Some(t))
                }
            };
            let app = App::build(demo::config(dns, http, data_dir.clone()))?;
            app.store()
                .write(|t| school::seed(t, demo::SCHOOL))
                .await
                .context("seeding the demo school")?;
            let counts = app.store().read(school::counts).await?;
            let http_addr = app.http_addr();
            app.run(shutdown_on_signal()?, move || {
                println!("Cartable demo is running (box demo-box, site ecole-demo)");
                println!("  web     http://{http_addr}/  (health /healthz, status /api/v1/status)");
                println!("  data    {}", data_dir.display());
                println!(
                    "  school  {} classes, {} teachers, {} pupils",
                    counts.classes, counts.teachers, counts.pupils
                );
                println!("Stop with Ctrl-C.");
            })
            .await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { http, config, json } => {
            let addr = match config {
                Some(path) => {
                    let c = Config::load(&path)?;
                    local_address(c.http.listen)
                }
                None => http,
            };
            let report = status_client::fetch(addr).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", status_client::render(&report));
            }
            Ok(if report.healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::CheckConfig { file } => Ok(check_config(&file)),
    }
}

/// A wildcard listen address is reached on loopback.
fn local_address(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => [127, 0, 0, 1].into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// A token cancelled on the first SIGTERM or SIGINT.
fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        t.cancel();
    });
    Ok(token)
}
