//! Cartable's edge daemon: one process per school box that filters DNS, caches apps,
//! hosts the classroom hub and syncs with the central side.
//!
//! `main.rs` only parses the command line; everything it runs lives here, so tests
//! drive the same code.
#![forbid(unsafe_code)]

pub mod admin_cli;
pub mod app;
pub mod base;
pub mod cache;
pub mod config;
pub mod demo;
pub mod dns;
pub mod filter;
pub mod filter_cli;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod logging;
pub(crate) mod net;
pub mod status_client;
pub mod store;
pub(crate) mod supervisor;
pub(crate) mod sync;
pub(crate) mod update;
/// The box's own signing key, for `cartable box-key`.
pub use sync::box_key;
pub(crate) mod web;
