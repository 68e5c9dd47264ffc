//! The app and update cache: objects fetched once over the weak link, verified, and
//! served on the LAN. This first part holds the object store, the catalogue as read
//! at start, and the serving side; the index and quota, the prefetcher and
//! pull-through come next (issue #6).

pub mod catalogue;
pub mod objects;
pub mod serve;
