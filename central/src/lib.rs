//! The fleet side of Cartable, as a library so tests drive the same code.
#![forbid(unsafe_code)]

pub mod auth;
pub mod broker;
pub mod dashboard;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod keys;
pub mod page;
pub mod policies;
pub mod policy_form;
pub mod publish;
pub mod release;
pub mod rollout;
pub mod serve;
pub mod store;
pub mod tablets;
pub mod usage;
