//! `cartable-central`: the fleet side of Cartable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The fleet console: fleet keys today; fleet state, dashboard and publishing of
/// signed desired state as the sync work lands.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Keygen { out, force } => match cartable_central::keys::generate(&out, force) {
            Ok(public) => {
                println!("private key written to {}", out.display());
                println!("fleet_public_key = \"{public}\"");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
