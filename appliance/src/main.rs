//! The `cartable` command: parses the command line and calls into the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use cartable::app::App;
use cartable::config::Config;
use cartable::{admin_cli, demo, filter_cli, logging, status_client};
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
        /// Resolve allowed names with this resolver (repeatable). Without one, the demo
        /// sends nothing off the machine and answers SERVFAIL for names it cannot know.
        #[arg(long)]
        upstream: Vec<SocketAddr>,
    },
    /// Check a configuration file: exit 0 if valid, else print every problem and exit 2.
    CheckConfig {
        /// The TOML configuration to check.
        file: PathBuf,
    },
    /// Inspect the filter: what it decides for a name, and what its lists hold.
    Filter {
        #[command(subcommand)]
        command: FilterCommand,
    },
    /// Manage the school admins' accounts (they sign in on the box's page).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print this box's public signing key (made at first use), for the fleet admin to
    /// pin with `cartable-central box add`.
    BoxKey {
        /// The box's configuration (its data folder holds the key).
        #[arg(long)]
        config: PathBuf,
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
    /// Turn IPv4 forwarding on when the configuration is a cart's that NATs its LAN
    /// (systemd runs this as root before the daemon, which may not write kernel
    /// settings); says what it did.
    NetForward {
        /// The box's configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Remove the cache's stale temporary files and given-up partial downloads (what
    /// the daily timer runs).
    CacheClean {
        /// The box's configuration (its data folder holds the cache).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Add an admin account, or set an admin's password: through the running daemon
    /// when there is one, else straight in the store.
    Add {
        /// The admin's login (a-z, 0-9, `.`, `_`, `-`).
        login: String,
        /// A file whose first line is the password (8 to 200 characters).
        #[arg(long)]
        password_file: PathBuf,
        /// The box's configuration.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum FilterCommand {
    /// Print the verdict for DOMAIN, the policy applied, and the category and list line
    /// that decided it.
    Test {
        /// The name a tablet would ask for.
        domain: String,
        /// The client asking (selects the policy).
        #[arg(long, default_value = "192.0.2.1")]
        client: std::net::IpAddr,
        /// When, in the filter's time zone, as `YYYY-MM-DD HH:MM` (default: now).
        #[arg(long)]
        at: Option<String>,
        /// The configuration naming the lists and policies (default: built-in).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Compile the lists and print each category with its number of entries.
    Lists {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Before any thread: large buffers go back to the kernel when freed.
    cartable_sys::return_large_allocations();
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

fn box_key(config: &Path) -> anyhow::Result<()> {
    let (config, key) = cartable::box_key::resolve_id(load_config(Some(config))?)?;
    let hex = cartable_protocol::desired::hex(ring::signature::KeyPair::public_key(&key).as_ref());
    println!("box_key = \"{hex}\"");
    println!(
        "pin it on the central side with:\n  cartable-central box add --site {} --box {} --key {hex}",
        config.appliance.site, config.appliance.id
    );
    Ok(())
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(Config::default()),
    }
}

async fn filter_command(command: FilterCommand) -> anyhow::Result<ExitCode> {
    match command {
        FilterCommand::Test {
            domain,
            client,
            at,
            config,
        } => {
            let config = load_config(config.as_deref())?;
            print!(
                "{}",
                filter_cli::test(&config, &domain, client, at.as_deref()).await?
            );
        }
        FilterCommand::Lists { config } => {
            let config = load_config(config.as_deref())?;
            let (table, warnings) = filter_cli::lists(&config)?;
            print!("{table}");
            for w in warnings {
                eprintln!("warning: {w}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_async(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::BoxKey { config } => {
            box_key(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::NetForward { config } => {
            let config = load_config(Some(&config))?;
            if config.net.forwards() {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                    .context("turning IPv4 forwarding on")?;
                println!("cart mode: IPv4 forwarding on");
            } else {
                println!("school mode (or no NAT): forwarding left as it is");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CacheClean { config } => {
            let config = load_config(Some(&config))?;
            let dir = &config.appliance.data_dir;
            let c = cartable::cache::clean::clean(dir, std::time::SystemTime::now())
                .with_context(|| format!("cleaning the cache in {}", dir.display()))?;
            println!("removed {} files ({} bytes)", c.files, c.bytes);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            logging::init("info");
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            // Signals first: one that comes while the lists compile still stops cleanly.
            let shutdown = shutdown_on_signal()?;
            let app = App::build(config)?;
            app.run(shutdown, || {}).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            dns,
            http,
            data_dir,
            upstream,
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
            let shutdown = shutdown_on_signal()?;
            demo::run(dns, http, data_dir, upstream, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { http, config, json } => {
            let addr = match config {
                Some(path) => {
                    let c = Config::load(&path)?;
                    status_client::local_address(c.http.listen)
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
        Command::Admin {
            command:
                AdminCommand::Add {
                    login,
                    password_file,
                    config,
                },
        } => {
            let config = load_config(Some(&config))?;
            let password = std::fs::read_to_string(&password_file)
                .with_context(|| format!("reading {}", password_file.display()))?;
            let password = password.lines().next().unwrap_or("").to_string();
            println!("{}", admin_cli::add(&config, &login, &password).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Filter { command } => filter_command(command).await,
    }
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
