//! The filter: which names a client may resolve. Pure logic over immutable data: no
//! sockets, no async, no clock of its own (the caller passes the time), so it is tested
//! exhaustively without a network and can later answer DNS-over-HTTPS from the
//! central side unchanged.
//!
//! - `list` and `ut1` read block lists; `index` compiles them into one compact map;
//! - `policy` holds named policies and maps clients to them;
//! - `safesearch` knows the search engines' official safe endpoints;
//! - `decide` turns (name, client, time) into a verdict with its reason.

pub mod decide;
pub mod index;
pub mod list;
pub mod load;
pub mod name;
pub mod policy;
pub mod safesearch;
pub mod ut1;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a UT1 blacklists folder (no category folders found)")]
    NotUt1(PathBuf),
    #[error("{path}: {skipped} of {total} lines are not domain names; refusing the file")]
    Garbage {
        path: PathBuf,
        skipped: u64,
        total: u64,
    },
    #[error("no category called `{0}`")]
    UnknownCategory(String),
    #[error("{0} categories; at most 128 are supported")]
    TooManyCategories(usize),
    #[error("policies: {0}")]
    Policy(String),
    #[error("building the index: {0}")]
    Index(String),
}
