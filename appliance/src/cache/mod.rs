//! The app and update cache: objects fetched once over the weak link, verified, and
//! served on the LAN. This first part holds the object store and the serving side;
//! the catalogue, the prefetcher and pull-through come next (issue #6).

pub mod objects;
pub mod serve;
