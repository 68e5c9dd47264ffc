//! The fleet side of Cartable, as a library so tests drive the same code.
#![forbid(unsafe_code)]

pub mod keys;
