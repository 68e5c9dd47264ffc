//! The leases' SQL: read back at start, one row per tablet (its MAC), written before
//! the ACK that gives the address.

use std::net::Ipv4Addr;

use super::pool::Lease;
use crate::config::Mac;
use crate::store::{Store, StoreError};

/// Every stored lease (an unreadable row is skipped: the tablet asks again).
pub(crate) fn load(store: &Store) -> Result<Vec<Lease>, StoreError> {
    store.read_blocking(|c| {
        let mut st = c.prepare("SELECT mac, address, hostname, expires FROM dhcp_leases")?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(mac, address, hostname, expires)| {
                Some(Lease {
                    mac: Mac::try_from(mac).ok()?,
                    address: address.parse::<Ipv4Addr>().ok()?,
                    hostname,
                    expires: u64::try_from(expires).ok()?,
                })
            })
            .collect())
    })
}

/// Stores `lease` as its MAC's, taking its address from any other row.
pub(crate) async fn put(store: &Store, lease: Lease) -> Result<(), StoreError> {
    store
        .write(move |tx| {
            let address = lease.address.to_string();
            let mac = lease.mac.to_string();
            tx.execute(
                "DELETE FROM dhcp_leases WHERE address = ?1 AND mac <> ?2",
                (&address, &mac),
            )?;
            tx.execute(
                "INSERT INTO dhcp_leases (mac, address, hostname, expires) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (mac) DO UPDATE SET address = excluded.address,
                     hostname = excluded.hostname, expires = excluded.expires",
                (
                    &mac,
                    &address,
                    &lease.hostname,
                    i64::try_from(lease.expires).unwrap_or(i64::MAX),
                ),
            )?;
            Ok(())
        })
        .await
}

/// Forgets `mac`'s lease.
pub(crate) async fn remove(store: &Store, mac: Mac) -> Result<(), StoreError> {
    store
        .write(move |tx| {
            tx.execute("DELETE FROM dhcp_leases WHERE mac = ?1", [mac.to_string()])?;
            Ok(())
        })
        .await
}
