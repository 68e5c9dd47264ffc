//! Every message Cartable puts on a wire, shared by the box, the central side and tests.
//!
//! Pure types and their encoding only: no sockets, no async, so each message is tested
//! exhaustively on its own.
#![forbid(unsafe_code)]

pub mod desired;
pub mod device;
pub mod events;
pub mod keyring;
pub mod release;
pub mod sealed;
pub mod status;
pub mod topics;
