//! DNS-rebinding protection: a public name must not resolve to an address inside the
//! school.
//!
//! Why: a page a pupil opens can serve a short-lived name that first points at the
//! attacker and then at `192.168.1.1`; the browser's same-origin rule then lets the
//! page's script talk to the box's admin pages, a printer or a camera on the LAN. As
//! dnsmasq's `stop-dns-rebind`, an upstream answer that gives a name outside the
//! allowed internal domains a private, loopback or link-local address is refused
//! (REFUSED to the client, nothing cached). The box's own names (`[dns] local`) are
//! answered before the upstream is asked and never reach this check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::{self, TYPE_A, TYPE_AAAA};
use crate::filter::policy::{DomainName, SuffixSet};

/// Which names are checked.
pub struct Rebind {
    /// Domains whose answers may be private (the school's internal zones).
    allow: SuffixSet,
}

impl Rebind {
    /// `None` when the protection is off.
    pub(crate) fn new(enabled: bool, allow: &[DomainName]) -> Option<Rebind> {
        enabled.then(|| Rebind {
            allow: SuffixSet::new(allow.iter().map(DomainName::as_str)),
        })
    }

    /// The private address `response` gives `name`, if it is one to refuse.
    pub(crate) fn violation(&self, name: &str, response: &[u8]) -> Option<IpAddr> {
        if self.allow.covering(name).is_some() {
            return None;
        }
        private_answer(response)
    }
}

/// The first address of the answer section that points inside a private network.
pub(crate) fn private_answer(response: &[u8]) -> Option<IpAddr> {
    let answers = usize::from(u16::from_be_bytes([*response.get(6)?, *response.get(7)?]));
    let records = wire::records(response).ok()?;
    records.iter().take(answers).find_map(|r| {
        // RDATA is the last `rdlength` bytes before `next`; the RDLENGTH field sits
        // right after the TTL.
        let rdata = response.get(r.ttl_at + 6..r.next)?;
        let ip = match (r.rtype, rdata.len()) {
            (TYPE_A, 4) => IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?),
            (TYPE_AAAA, 16) => IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?),
            _ => return None,
        };
        is_private(ip).then_some(ip)
    })
}

/// Private (RFC 1918, ULA), loopback, link-local, unspecified or "this network".
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private_v4(v4),
            None => private_v6(v6),
        },
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.octets()[0] == 0
}

fn private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || first & 0xfe00 == 0xfc00 // fc00::/7, unique local
        || first & 0xffc0 == 0xfe80 // fe80::/10, link-local
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn answer(name: &str, data: Vec<RData>) -> Vec<u8> {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        let n = Name::from_ascii(name).unwrap();
        m.add_query(hickory_proto::op::Query::query(n.clone(), RecordType::A));
        for d in data {
            m.add_answer(Record::from_rdata(n.clone(), 60, d));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn private_addresses_of_public_names_are_caught() {
        let rebind =
            Rebind::new(true, &[DomainName::try_from("lan".to_string()).unwrap()]).unwrap();
        let public = answer("www.example.com.", vec![RData::A(A::new(93, 184, 215, 14))]);
        assert_eq!(rebind.violation("www.example.com", &public), None);
        for private in [
            RData::A(A::new(192, 168, 1, 1)),
            RData::A(A::new(10, 0, 0, 1)),
            RData::A(A::new(172, 20, 0, 1)),
            RData::A(A::new(127, 0, 0, 1)),
            RData::A(A::new(169, 254, 1, 1)),
            RData::A(A::new(0, 0, 0, 0)),
            RData::AAAA(AAAA("fd00::1".parse().unwrap())),
            RData::AAAA(AAAA("fe80::1".parse().unwrap())),
            RData::AAAA(AAAA("::1".parse().unwrap())),
            RData::AAAA(AAAA("::ffff:192.168.0.1".parse().unwrap())),
        ] {
            let cname = RData::CNAME(CNAME(Name::from_ascii("x.example.com.").unwrap()));
            let bytes = answer("evil.example.com.", vec![cname, private.clone()]);
            assert!(
                rebind.violation("evil.example.com", &bytes).is_some(),
                "{private:?}"
            );
            assert_eq!(
                rebind.violation("printer.lan", &bytes),
                None,
                "allowed zone"
            );
        }
    }
}
