//! The filtering DNS server: `wire` reads and writes messages, `cache` keeps upstream
//! answers (serving them stale when the uplink is down), `forward` asks the upstream,
//! `engine` decides each answer with `crate::filter`, `server` owns the sockets (`udp` its
//! answering threads) and
//! `reload` swaps in new lists without dropping a query.

pub mod cache;
pub mod engine;
pub mod forward;
pub mod persist;
pub mod querylog;
pub mod reload;
pub mod server;
pub mod stats;
pub mod udp;
pub mod wire;
