//! The box's view of its network: for now, whether the uplink is there.

pub(crate) mod uplink;
