//! `cartable-central`: the fleet side of Cartable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cartable_central::broker::BrokerArgs;
use cartable_central::keys;
use cartable_protocol::desired::Body;
use clap::{Parser, Subcommand};

/// The fleet console: fleet keys, signed desired state, fleet state and dashboard.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Only this site (default: the whole fleet).
    #[arg(long)]
    site: Option<String>,
    /// Only this box of `--site`.
    #[arg(long = "box")]
    box_id: Option<String>,
    /// The working key (its root certificate is read from the same path + `.cert`).
    #[arg(long, default_value = "fleet.key")]
    key: PathBuf,
    /// The root's certificate for the working key (default: the key's path + `.cert`).
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// The version to sign (default: milliseconds since 1970, so always newer; it may
    /// not run ahead of the signing time).
    #[arg(long = "desired-version")]
    desired_version: Option<u64>,
}

// Parsed once at start: the size of the largest command costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Make an Ed25519 key: a working key (default) or, with --root, the fleet's root
    /// key, whose public half every box pins and whose private half stays offline.
    Keygen {
        /// Where to write the private key (PKCS#8, readable by its owner only).
        #[arg(long, default_value = "fleet.key")]
        out: PathBuf,
        /// Make the root key.
        #[arg(long)]
        root: bool,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// On the offline machine: the root certifies a working key for a period.
    Certify {
        /// The root's private key.
        #[arg(long, default_value = "root.key")]
        root: PathBuf,
        /// The working key's public half (hex, as `keygen` printed it).
        #[arg(long)]
        key: String,
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
        /// Days the key may sign, from now.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write the certificate (put it beside the working key as KEY.cert).
        #[arg(long, default_value = "fleet.key.cert")]
        out: PathBuf,
    },
    /// On the offline machine: the root signs the list of revoked working keys.
    Revoke {
        #[arg(long, default_value = "root.key")]
        root: PathBuf,
        /// Every working key still revoked (the list replaces the previous one).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        #[arg(long, default_value = "revocations.json")]
        out: PathBuf,
    },
    /// Take in every box's state and events; serve the dashboard and the JSON API.
    Serve {
        #[command(flatten)]
        broker: BrokerArgs,
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
        /// Share the boxes' events with the other instances whose group name is in
        /// this file (each with its own --client-id, one PostgreSQL): the broker
        /// hands each batch to one of them. An instance that stops keeps what it had
        /// been handed until it is back under the same client id. The name is a
        /// secret (`openssl rand -hex 16`): Mosquitto lets any account join a shared
        /// subscription, and a box in the group would have the broker drop every
        /// batch it hands to it (the box may not read them).
        #[arg(long)]
        share_group_file: Option<PathBuf>,
        /// The working key that signs each group's manifest as a rollout widens, and
        /// what admins publish from the policies page (its certificate at the same
        /// path + `.cert`); without it rollouts wait for `release widen`, and the page
        /// does not publish.
        #[arg(long)]
        release_key: Option<PathBuf>,
        /// Seconds between two looks at the rollouts.
        #[arg(long, default_value_t = 60)]
        rollout_every: u64,
    },
    /// The boxes' own keys, which seal everything they publish.
    Box {
        #[command(subcommand)]
        action: BoxAction,
    },
    /// The console's admin accounts (the dashboard and the JSON API ask them to sign
    /// in, but on the central host itself).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
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
    /// Firmware releases: a RAUC bundle cut into chunks and its signed manifest.
    Release {
        #[command(subcommand)]
        action: ReleaseAction,
    },
    /// The root's revocation list, as `revoke` wrote it.
    Revocations {
        #[command(subcommand)]
        action: PublishFile,
    },
}

#[derive(Subcommand)]
enum BoxAction {
    /// Pin a box's key before its first contact (`cartable box-key` prints it on the
    /// box), or replace the pinned key of a reinstalled box; messages held under that
    /// key are then taken in.
    Add {
        #[arg(long)]
        site: String,
        #[arg(long = "box")]
        box_id: String,
        /// The box's public key, 64 hex digits.
        #[arg(long)]
        key: String,
        /// Replace the key pinned for this box.
        #[arg(long)]
        replace: bool,
        /// The database `serve` uses.
        #[arg(long, default_value = "central.db")]
        database: String,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Add an admin, or set an admin's password.
    Add {
        /// The admin's login (a-z, 0-9, `.`, `_`, `-`).
        login: String,
        /// A file whose first line is the password (12 to 200 characters).
        #[arg(long)]
        password_file: PathBuf,
        /// The database `serve` uses.
        #[arg(long, default_value = "central.db")]
        database: String,
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
        broker: BrokerArgs,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ReleaseAction {
    /// Cut BUNDLE into chunks under --store (served as they are by any HTTP server at
    /// --chunk-url), sign the manifest and leave it retained on the broker.
    // `--version` is the release's here, not the console's.
    #[command(disable_version_flag = true)]
    Publish {
        /// The RAUC bundle (`rauc bundle`, signed with the release certificate).
        bundle: PathBuf,
        /// Dotted numbers, newer than what the boxes run.
        #[arg(long)]
        version: String,
        /// The board it is for (x86_64, rpi4, rpi5).
        #[arg(long)]
        board: String,
        /// The folder of chunks (each release's new chunks are added to it).
        #[arg(long)]
        store: PathBuf,
        /// Where boxes fetch the chunks: `<URL>/<sha256>` (repeatable).
        #[arg(long = "chunk-url", required = true)]
        chunk_urls: Vec<String>,
        /// The oldest running version it upgrades.
        #[arg(long)]
        min_from: Option<String>,
        /// Only this share of the boxes, 1 to 100.
        #[arg(long)]
        wave: Option<u8>,
        /// Only these sites (comma-separated).
        #[arg(long, value_delimiter = ',')]
        sites: Vec<String>,
        /// When boxes may install, school-local time: HH:MM-HH:MM.
        #[arg(long)]
        window: Option<String>,
        /// A rollback order: boxes on a newer version go back to this one.
        #[arg(long)]
        downgrade: bool,
        /// A rollout in groups, as cumulative percents of the boxes ending at 100
        /// (e.g. 10,50,100); `serve --release-key` starts each group in turn.
        #[arg(long, value_delimiter = ',', conflicts_with = "wave")]
        waves: Vec<u8>,
        /// Percent of a group committed before the next starts.
        #[arg(long, default_value_t = 80)]
        success: u8,
        /// Boxes rolled back or refused that halt the rollout: a count (3) or a
        /// percent of the boxes started (10%).
        #[arg(long, default_value = "1")]
        error_threshold: cartable_central::rollout::Threshold,
        /// Record the rollout in the console's database (`release status` and the
        /// dashboard follow it; `serve` moves its groups).
        #[arg(long)]
        database: Option<String>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Every rollout, its groups, and every box's version and update state.
    Status {
        #[arg(long, default_value = "central.db")]
        database: String,
        /// As JSON (what /api/v1/releases serves).
        #[arg(long)]
        json: bool,
    },
    /// No further group starts until `resume` (boxes already started go on).
    Pause {
        #[command(flatten)]
        which: Which,
    },
    /// Groups start again as their thresholds are met; failures seen so far accepted.
    Resume {
        #[command(flatten)]
        which: Which,
    },
    /// Start the next group now (or the group reaching --to percent).
    Widen {
        #[arg(long)]
        to: Option<u8>,
        #[arg(long, default_value = "central.db")]
        database: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Boxes that have not installed the release stop and drop it; final.
    Abort {
        #[arg(long, default_value = "central.db")]
        database: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

/// Which rollout: the one of the fleet, a site or a box.
#[derive(clap::Args, Clone)]
struct Which {
    #[arg(long)]
    site: Option<String>,
    #[arg(long = "box")]
    box_id: Option<String>,
    #[arg(long, default_value = "central.db")]
    database: String,
}

#[derive(Subcommand)]
enum PublishFile {
    /// Leave FILE (already signed by the root) retained on the broker.
    Publish {
        file: PathBuf,
        #[command(flatten)]
        broker: BrokerArgs,
    },
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

// Long: one arm per subcommand, each only unpacking its arguments for the library.
fn run(command: Command) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        Command::Keygen { out, root, force } => {
            let public = keys::generate(&out, force)?;
            println!("private key written to {}", out.display());
            if root {
                println!("fleet_public_key = \"{public}\"");
                println!(
                    "keep {} offline; pin the line above in every box's [sync]",
                    out.display()
                );
            } else {
                println!("working_key = \"{public}\"");
                println!(
                    "have the root certify it: cartable-central certify --key {public} --out {}",
                    keys::certificate_path(&out).display()
                );
            }
            Ok(())
        }
        Command::Certify {
            root,
            key,
            name,
            days,
            out,
        } => {
            let cert = keys::certify(&root, &key, &name, cartable_central::store::now(), days)?;
            std::fs::write(&out, serde_json::to_vec_pretty(&cert)?)?;
            println!(
                "certificate written to {} (valid {days} days)",
                out.display()
            );
            Ok(())
        }
        Command::Revoke { root, keys: k, out } => {
            std::fs::write(
                &out,
                keys::revoke(&root, &k, cartable_central::store::now())?,
            )?;
            println!(
                "revocation list written to {}: {} keys",
                out.display(),
                k.len()
            );
            Ok(())
        }
        Command::Serve {
            broker,
            database,
            listen,
            client_id,
            share_group_file,
            release_key,
            rollout_every,
        } => rt.block_on(serve(
            cartable_central::serve::ServeConfig {
                broker,
                client_id,
                share_group: share_group_file.map(|f| share_group(&f)).transpose()?,
                database,
                rollouts: release_key
                    .map(|k| keys::signer(&k, None))
                    .transpose()?
                    .map(|s| {
                        (
                            std::sync::Arc::new(s),
                            std::time::Duration::from_secs(rollout_every.max(1)),
                        )
                    }),
            },
            listen,
        )),
        Command::Admin {
            action:
                AdminAction::Add {
                    login,
                    password_file,
                    database,
                },
        } => rt.block_on(async move {
            let ok_login = !login.is_empty()
                && login.len() <= 64
                && login
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if !ok_login {
                anyhow::bail!("`{login}` is not a login: a-z, 0-9, `.`, `_`, `-`, at most 64");
            }
            let text = std::fs::read_to_string(&password_file)
                .with_context(|| format!("reading {}", password_file.display()))?;
            let password = text.lines().next().unwrap_or("");
            if !(12..=200).contains(&password.chars().count()) {
                anyhow::bail!(
                    "the password must have 12 to 200 characters (the console is on the internet)"
                );
            }
            let db = cartable_central::store::Db::open(&database).await?;
            db.set_admin(&login, &cartable_central::auth::hash_password(password))
                .await?;
            println!("admin {login}: password set");
            Ok(())
        }),
        Command::Box {
            action:
                BoxAction::Add {
                    site,
                    box_id,
                    key,
                    replace,
                    database,
                },
        } => rt.block_on(async move {
            let db = cartable_central::store::Db::open(&database).await?;
            let added =
                cartable_central::ingest::add_box(&db, &site, &box_id, &key, replace).await?;
            println!(
                "{site}/{box_id}: {:?}; {} held messages taken in",
                added.pinned, added.released
            );
            Ok(())
        }),
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
        Command::Release { action } => rt.block_on(release(action)),
        Command::Revocations {
            action: PublishFile::Publish { file, broker },
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_slice::<cartable_protocol::keyring::SignedRevocations>(&bytes)
                .with_context(|| format!("{} is not a list `revoke` wrote", file.display()))?;
            let topic = cartable_protocol::topics::revocations();
            rt.block_on(cartable_central::publish::send(
                &broker, &topic, bytes, true,
            ))?;
            println!("published the revocation list on {topic} (retained)");
            Ok(())
        }
    }
}

// Long: one arm per release subcommand, each unpacking its arguments.
async fn release(action: ReleaseAction) -> anyhow::Result<()> {
    use cartable_central::rollout::{self, Plan, Rollout, control};
    let open = |database: String| async move {
        cartable_central::store::Db::open(&database)
            .await
            .with_context(|| format!("opening the database {database}"))
    };
    match action {
        ReleaseAction::Publish {
            bundle,
            version,
            board,
            store,
            chunk_urls,
            min_from,
            wave,
            sites,
            window,
            downgrade,
            waves,
            success,
            error_threshold,
            database,
            target,
            broker,
        } => {
            if let Some(warning) = cartable_central::release::delta_warning(&bundle) {
                eprintln!("warning: {warning}");
            }
            let cut = cartable_central::release::cut(&bundle, &store)?;
            let release = cartable_protocol::release::Release {
                version,
                board,
                bundle: cut.bundle,
                chunks: cut.chunks,
                chunk_urls,
                min_from,
                rollout: cartable_protocol::release::Rollout {
                    wave_percent: wave,
                    sites,
                    aborted: false,
                },
                window,
                downgrade,
            };
            release.check().context("the release would be refused")?;
            println!(
                "{} chunks, {} new ({} of {} bytes) in {}",
                release.chunks.len(),
                cut.new_chunks,
                cut.new_bytes,
                release.bundle.size,
                store.display()
            );
            let scope = cartable_central::publish::scope(target.site, target.box_id)?;
            let signer = keys::signer(&target.key, target.certificate.as_deref())?;
            let Some(database) = database else {
                if !waves.is_empty() {
                    anyhow::bail!("--waves needs --database: the console follows the groups");
                }
                let (topic, version) = cartable_central::publish::publish(
                    &signer,
                    &broker,
                    scope,
                    cartable_protocol::desired::Body::Release(release),
                    target.desired_version,
                )
                .await?;
                println!("published version {version} on {topic} (retained)");
                return Ok(());
            };
            let groups = if waves.is_empty() {
                vec![wave.unwrap_or(100)]
            } else {
                waves
            };
            let groups = if groups.last() == Some(&100) {
                groups
            } else {
                [groups, vec![100]].concat()
            };
            let plan = Plan::new(&groups, success, error_threshold).map_err(anyhow::Error::msg)?;
            let db = open(database).await?;
            let r = Rollout::new(scope, release, plan, cartable_central::store::now());
            let p = control::Publisher {
                signer: &signer,
                broker: &broker,
            };
            let (topic, version) = control::start(&db, &p, r).await?;
            println!(
                "rollout started: group 1 of {} ({} %); published version {version} on {topic} (retained)",
                groups.len(),
                groups[0]
            );
            Ok(())
        }
        ReleaseAction::Status { database, json } => {
            let report = control::report(&open(database).await?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", rollout::show(&report, cartable_central::store::now()));
            }
            Ok(())
        }
        ReleaseAction::Pause { which } => {
            let scope = cartable_central::publish::scope(which.site, which.box_id)?;
            let r = control::set_running(&open(which.database).await?, &scope, false).await?;
            println!("rollout of {} paused", r.release.version);
            Ok(())
        }
        ReleaseAction::Resume { which } => {
            let scope = cartable_central::publish::scope(which.site, which.box_id)?;
            let r = control::set_running(&open(which.database).await?, &scope, true).await?;
            println!(
                "rollout of {} resumed ({} failures accepted)",
                r.release.version, r.failures_accepted
            );
            Ok(())
        }
        ReleaseAction::Widen {
            to,
            database,
            target,
            broker,
        } => {
            let scope = cartable_central::publish::scope(target.site, target.box_id)?;
            let signer = keys::signer(&target.key, target.certificate.as_deref())?;
            let p = control::Publisher {
                signer: &signer,
                broker: &broker,
            };
            let r = control::widen(&open(database).await?, &p, &scope, to).await?;
            println!(
                "rollout of {} widened to {} %",
                r.release.version,
                r.percent(r.group)
            );
            Ok(())
        }
        ReleaseAction::Abort {
            database,
            target,
            broker,
        } => {
            let scope = cartable_central::publish::scope(target.site, target.box_id)?;
            let signer = keys::signer(&target.key, target.certificate.as_deref())?;
            let p = control::Publisher {
                signer: &signer,
                broker: &broker,
            };
            let r = control::abort(&open(database).await?, &p, &scope).await?;
            println!("rollout of {} aborted", r.release.version);
            Ok(())
        }
    }
}

/// The shared subscription's group name, from its file: a secret of 16 to 64 of
/// a-z, 0-9, `-`, `_`.
fn share_group(file: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = text.trim();
    if name.len() < 16 || !cartable_protocol::topics::valid_share_group(name) {
        anyhow::bail!(
            "{}: the group name must be a secret of 16 to 64 of a-z, 0-9, `-`, `_` \
             (e.g. `openssl rand -hex 16`)",
            file.display()
        );
    }
    Ok(name.to_string())
}

/// Serves until SIGTERM or Ctrl-C.
async fn serve(
    config: cartable_central::serve::ServeConfig,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    let listener = cartable_central::serve::bind(listen).await?;
    eprintln!("dashboard on http://{}", listener.local_addr()?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop.cancel();
    });
    cartable_central::serve::run(listener, config, shutdown).await
}

fn publish(
    body: Body,
    target: Target,
    broker: BrokerArgs,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let scope = cartable_central::publish::scope(target.site, target.box_id)?;
    let signer = keys::signer(&target.key, target.certificate.as_deref())?;
    let (topic, version) = rt.block_on(cartable_central::publish::publish(
        &signer,
        &broker,
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
