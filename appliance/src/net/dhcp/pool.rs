//! Who gets which address: the lease table in memory and the DHCP decisions on it,
//! pure (no socket, no store, no clock of its own: `now` is handed in), so every
//! exchange of RFC 2131 is a unit test.
//!
//! The server is authoritative on the cart's LAN: a tablet asking for an address
//! that is not its own there (it came from another network) is told NAK at once and
//! starts over, instead of waiting out its old lease. A tablet keeps its address
//! across its own reboots and the box's (the leases are in the store), and a static
//! lease is its MAC's whatever else happens.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::config::{Ipv4Net, Mac};

/// How long an offer holds its address for the tablet that was offered it.
const OFFER_HOLD_SECS: u64 = 60;

/// One tablet's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub mac: Mac,
    pub address: Ipv4Addr,
    pub hostname: String,
    /// Unix seconds; a lease past it may be given to another tablet, the oldest first.
    pub expires: u64,
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Offer(Ipv4Addr),
    /// The lease to store before the ACK goes out.
    Ack(Lease),
    /// INFORM: options only, no address given.
    Inform,
    Nak(&'static str),
    /// Nothing to say (another server's offer taken, a release, a full pool).
    Silent(&'static str),
}

/// What a client asked, read off its message by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ask {
    pub kind: AskKind,
    pub mac: Mac,
    /// Option 50.
    pub requested: Option<Ipv4Addr>,
    pub ciaddr: Ipv4Addr,
    /// Option 54: the server the client chose, in a REQUEST after an offer.
    pub server_id: Option<Ipv4Addr>,
    /// Option 12.
    pub hostname: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskKind {
    Discover,
    Request,
    Release,
    Decline,
    Inform,
}

/// The lease table and the rules it is kept by.
pub(crate) struct Pool {
    lan: Ipv4Net,
    first: u32,
    last: u32,
    lease_secs: u64,
    statics: HashMap<Mac, Ipv4Addr>,
    /// Addresses reserved by a static lease, whoever asks.
    reserved: HashMap<Ipv4Addr, Mac>,
    by_mac: HashMap<Mac, Lease>,
    by_addr: HashMap<Ipv4Addr, Mac>,
    /// Offers made and not yet taken: address -> (MAC, until).
    offered: HashMap<Ipv4Addr, (Mac, u64)>,
    /// Addresses a client said are in use by someone else (DECLINE), until then.
    declined: HashMap<Ipv4Addr, u64>,
}

impl Pool {
    pub(crate) fn new(
        lan: Ipv4Net,
        range: (Ipv4Addr, Ipv4Addr),
        lease_secs: u32,
        statics: impl IntoIterator<Item = (Mac, Ipv4Addr)>,
    ) -> Pool {
        let statics: HashMap<Mac, Ipv4Addr> = statics.into_iter().collect();
        Pool {
            lan,
            first: u32::from(range.0),
            last: u32::from(range.1),
            lease_secs: u64::from(lease_secs),
            reserved: statics.iter().map(|(m, a)| (*a, *m)).collect(),
            statics,
            by_mac: HashMap::new(),
            by_addr: HashMap::new(),
            offered: HashMap::new(),
            declined: HashMap::new(),
        }
    }

    /// Puts back a lease read from the store (one that no longer fits the range or a
    /// static lease is left out).
    pub(crate) fn restore(&mut self, lease: Lease) -> bool {
        let fits =
            self.in_range(lease.address) || self.statics.get(&lease.mac) == Some(&lease.address);
        let taken = self
            .reserved
            .get(&lease.address)
            .is_some_and(|m| *m != lease.mac)
            || self.by_addr.contains_key(&lease.address);
        if !fits || taken {
            return false;
        }
        self.by_addr.insert(lease.address, lease.mac);
        self.by_mac.insert(lease.mac, lease);
        true
    }

    pub(crate) fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.by_mac.values()
    }

    pub(crate) fn lease_secs(&self) -> u64 {
        self.lease_secs
    }

    fn in_range(&self, a: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(a))
    }

    /// May `mac` have `a` now?
    fn free_for(&self, a: Ipv4Addr, mac: Mac, now: u64) -> bool {
        if let Some(owner) = self.reserved.get(&a) {
            return *owner == mac;
        }
        if !self.in_range(a) || a == self.lan.addr {
            return false;
        }
        if self.declined.get(&a).is_some_and(|until| *until > now) {
            return false;
        }
        if let Some((owner, until)) = self.offered.get(&a)
            && *owner != mac
            && *until > now
        {
            return false;
        }
        match self.by_addr.get(&a) {
            None => true,
            Some(owner) if *owner == mac => true,
            Some(owner) => self.by_mac.get(owner).is_none_or(|l| l.expires <= now),
        }
    }

    /// The address to offer `mac`: its static one, its lease, the one it asks for,
    /// a never-used one, else the lease that expired longest ago.
    fn choose(&self, mac: Mac, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some(a) = self.statics.get(&mac) {
            return Some(*a);
        }
        if let Some(l) = self.by_mac.get(&mac)
            && self.free_for(l.address, mac, now)
        {
            return Some(l.address);
        }
        if let Some((a, _)) = self
            .offered
            .iter()
            .find(|(_, (m, until))| *m == mac && *until > now)
        {
            return Some(*a);
        }
        if let Some(r) = requested
            && self.free_for(r, mac, now)
        {
            return Some(r);
        }
        let mut oldest: Option<(u64, Ipv4Addr)> = None;
        for n in self.first..=self.last {
            let a = Ipv4Addr::from(n);
            if !self.free_for(a, mac, now) {
                continue;
            }
            match self.by_addr.get(&a).and_then(|m| self.by_mac.get(m)) {
                None => return Some(a),
                Some(l) if oldest.is_none_or(|(e, _)| l.expires < e) => {
                    oldest = Some((l.expires, a));
                }
                Some(_) => {}
            }
        }
        oldest.map(|(_, a)| a)
    }

    /// Decides the answer to `ask` and updates the table (an ACK's lease is in the
    /// table at once; the caller stores it before sending the ACK).
    pub(crate) fn decide(&mut self, ask: &Ask, now: u64) -> Decision {
        self.offered.retain(|_, (_, until)| *until > now);
        match ask.kind {
            AskKind::Discover => match self.choose(ask.mac, ask.requested, now) {
                Some(a) => {
                    self.offered.insert(a, (ask.mac, now + OFFER_HOLD_SECS));
                    Decision::Offer(a)
                }
                None => Decision::Silent("the pool is full"),
            },
            AskKind::Request => self.request(ask, now),
            AskKind::Release => {
                if let Some(l) = self.by_mac.get_mut(&ask.mac)
                    && l.address == ask.ciaddr
                {
                    l.expires = now;
                }
                Decision::Silent("released")
            }
            AskKind::Decline => {
                if let Some(a) = ask.requested
                    && self.by_mac.get(&ask.mac).is_some_and(|l| l.address == a)
                {
                    self.by_mac.remove(&ask.mac);
                    self.by_addr.remove(&a);
                    self.declined.insert(a, now + self.lease_secs);
                }
                Decision::Silent("declined")
            }
            AskKind::Inform => Decision::Inform,
        }
    }

    fn request(&mut self, ask: &Ask, now: u64) -> Decision {
        if let Some(server) = ask.server_id
            && server != self.lan.addr
        {
            // The tablet took another server's offer: ours is free again.
            self.offered.retain(|_, (m, _)| *m != ask.mac);
            return Decision::Silent("another server was chosen");
        }
        let wanted = match ask.requested {
            Some(a) => a,
            None if ask.ciaddr != Ipv4Addr::UNSPECIFIED => ask.ciaddr,
            None => return Decision::Nak("no address asked for"),
        };
        if !self.lan.contains(wanted) {
            return Decision::Nak("not an address of this LAN");
        }
        if let Some(own) = self.statics.get(&ask.mac)
            && *own != wanted
        {
            return Decision::Nak("this tablet has a static address");
        }
        if !self.free_for(wanted, ask.mac, now) {
            return Decision::Nak("the address is another tablet's");
        }
        self.offered.remove(&wanted);
        if let Some(old) = self.by_mac.get(&ask.mac)
            && old.address != wanted
        {
            self.by_addr.remove(&old.address);
        }
        if let Some(prev) = self.by_addr.insert(wanted, ask.mac)
            && prev != ask.mac
        {
            self.by_mac.remove(&prev);
        }
        let hostname = if ask.hostname.is_empty() {
            self.by_mac
                .get(&ask.mac)
                .map(|l| l.hostname.clone())
                .unwrap_or_default()
        } else {
            ask.hostname.clone()
        };
        let lease = Lease {
            mac: ask.mac,
            address: wanted,
            hostname,
            expires: now + self.lease_secs,
        };
        self.by_mac.insert(ask.mac, lease.clone());
        Decision::Ack(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    fn pool() -> Pool {
        let lan = Ipv4Net::try_from("10.42.0.1/24".to_string()).unwrap();
        Pool::new(
            lan,
            (Ipv4Addr::new(10, 42, 0, 100), Ipv4Addr::new(10, 42, 0, 102)),
            3600,
            [(mac(9), Ipv4Addr::new(10, 42, 0, 50))],
        )
    }

    fn ask(kind: AskKind, m: Mac) -> Ask {
        Ask {
            kind,
            mac: m,
            requested: None,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            server_id: None,
            hostname: String::new(),
        }
    }

    /// DISCOVER, then REQUEST of the offer naming this server.
    fn lease(p: &mut Pool, m: Mac, now: u64) -> Decision {
        let Decision::Offer(a) = p.decide(&ask(AskKind::Discover, m), now) else {
            return Decision::Silent("no offer");
        };
        let mut r = ask(AskKind::Request, m);
        r.requested = Some(a);
        r.server_id = Some(Ipv4Addr::new(10, 42, 0, 1));
        p.decide(&r, now)
    }

    fn addr(d: &Decision) -> Ipv4Addr {
        match d {
            Decision::Ack(l) => l.address,
            other => panic!("not an ACK: {other:?}"),
        }
    }

    #[test]
    fn two_tablets_never_share_an_address_and_a_full_pool_is_silent() {
        let mut p = pool();
        let a = addr(&lease(&mut p, mac(1), 0));
        let b = addr(&lease(&mut p, mac(2), 0));
        let c = addr(&lease(&mut p, mac(3), 0));
        assert!(a != b && b != c && a != c);
        assert_eq!(lease(&mut p, mac(4), 0), Decision::Silent("no offer"));
        // Once a lease expired, its address goes to the next tablet.
        assert!(matches!(lease(&mut p, mac(4), 3601), Decision::Ack(_)));
    }

    #[test]
    fn an_offer_holds_its_address_against_another_tablet() {
        let mut p = pool();
        let Decision::Offer(a) = p.decide(&ask(AskKind::Discover, mac(1)), 0) else {
            panic!()
        };
        let Decision::Offer(b) = p.decide(&ask(AskKind::Discover, mac(2)), 0) else {
            panic!()
        };
        assert_ne!(a, b);
        let mut steal = ask(AskKind::Request, mac(2));
        steal.requested = Some(a);
        assert!(matches!(p.decide(&steal, 1), Decision::Nak(_)));
    }

    #[test]
    fn a_tablet_keeps_its_address_and_a_static_lease_is_its_macs() {
        let mut p = pool();
        let a = addr(&lease(&mut p, mac(1), 0));
        assert_eq!(addr(&lease(&mut p, mac(1), 100)), a);
        assert_eq!(
            addr(&lease(&mut p, mac(9), 0)),
            Ipv4Addr::new(10, 42, 0, 50)
        );
        // Nobody else gets the static address, even by asking for it.
        let mut r = ask(AskKind::Request, mac(2));
        r.requested = Some(Ipv4Addr::new(10, 42, 0, 50));
        assert!(matches!(p.decide(&r, 0), Decision::Nak(_)));
    }

    #[test]
    fn authoritative_an_address_from_elsewhere_is_refused_at_once() {
        let mut p = pool();
        let mut r = ask(AskKind::Request, mac(1));
        r.requested = Some(Ipv4Addr::new(192, 168, 1, 20));
        assert_eq!(p.decide(&r, 0), Decision::Nak("not an address of this LAN"));
        // Renewing (ciaddr, no option 50) a lease it holds is acknowledged.
        let a = addr(&lease(&mut p, mac(1), 0));
        let mut renew = ask(AskKind::Request, mac(1));
        renew.ciaddr = a;
        assert_eq!(addr(&p.decide(&renew, 10)), a);
    }

    #[test]
    fn another_servers_offer_taken_frees_ours() {
        let mut p = pool();
        let Decision::Offer(a) = p.decide(&ask(AskKind::Discover, mac(1)), 0) else {
            panic!()
        };
        let mut r = ask(AskKind::Request, mac(1));
        r.server_id = Some(Ipv4Addr::new(10, 42, 0, 254));
        r.requested = Some(Ipv4Addr::new(10, 42, 0, 77));
        assert!(matches!(p.decide(&r, 0), Decision::Silent(_)));
        assert_eq!(addr(&lease(&mut p, mac(2), 0)), a);
    }

    #[test]
    fn restored_leases_come_back_and_a_declined_address_rests() {
        let mut p = pool();
        let l = Lease {
            mac: mac(1),
            address: Ipv4Addr::new(10, 42, 0, 101),
            hostname: "tab".into(),
            expires: 1000,
        };
        assert!(p.restore(l.clone()));
        assert!(
            !p.restore(Lease {
                mac: mac(2),
                ..l.clone()
            }),
            "one address, one tablet"
        );
        assert_eq!(addr(&lease(&mut p, mac(1), 10)), l.address);
        let mut d = ask(AskKind::Decline, mac(1));
        d.requested = Some(l.address);
        p.decide(&d, 20);
        assert_ne!(addr(&lease(&mut p, mac(1), 30)), l.address);
    }
}
