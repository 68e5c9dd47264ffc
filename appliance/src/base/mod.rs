//! The ground floor: small helpers that several services need and none owns.
//!
//! What lives here: time (`clock`), retry waits (`backoff`), TLS client set-up
//! (`tls`), free disk space (`disk`) and the HTTP pieces every service's routes share
//! (`http`). What must not: anything that knows a service, the store or the config
//! tree. A module here imports only the standard library, crates and other modules of
//! this floor (the tidy test says so), so any service may use it without a cycle.

pub(crate) mod backoff;
pub mod clock;
pub(crate) mod disk;
pub(crate) mod http;
pub(crate) mod tls;
