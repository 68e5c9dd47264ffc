//! Black-box tests of the `cartable` binary: they run it as a person or systemd would.

mod check_config;
mod daemon;
mod filter_cli;
mod support;
mod tidy;
