//! Per-client query rate limit: a token bucket per source address.
//!
//! Why: one pupil's script flooding the box must not take the DNS from the other 500
//! tablets. The bucket is generous (a tablet opening a news site sends 50 to 100
//! queries in a second; the default burst takes ten of those at once) and queries past
//! it are dropped, as a congested network would drop them: the client's resolver
//! retries. Each UDP thread owns a limiter (no lock on the answer path); the kernel
//! keeps one client's socket on one thread, so a client spreading its queries over
//! several source ports gets at most one bucket per thread.

use hashbrown::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::filter::policy::Cidr;

/// Clients remembered at once; past it, the full (idle) buckets are forgotten first.
const MAX_CLIENTS: usize = 16_384;

/// The limits, from `[dns]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Queries per second, sustained; 0 turns the limit off.
    pub rate: u32,
    pub burst: u32,
    pub exempt: Vec<Cidr>,
}

pub(crate) struct RateLimiter {
    limits: Limits,
    /// (tokens, last refill).
    buckets: HashMap<IpAddr, (f32, Instant)>,
}

impl RateLimiter {
    pub(crate) fn new(limits: Limits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: HashMap::default(),
        }
    }

    /// Whether `client` may have one more query answered at `now`.
    pub(crate) fn allow(&mut self, client: IpAddr, now: Instant) -> bool {
        let Limits {
            rate,
            burst,
            exempt,
            ..
        } = &self.limits;
        if *rate == 0 || exempt.iter().any(|c| c.contains(client)) {
            return true;
        }
        let (rate, burst) = (*rate as f32, (*burst).max(1) as f32);
        let client = client_key(client);
        if self.buckets.len() >= MAX_CLIENTS && !self.buckets.contains_key(&client) {
            self.forget_idle(now);
        }
        let (tokens, last) = self.buckets.entry(client).or_insert((burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f32() * rate;
        *tokens = (*tokens + refill).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops the buckets that have refilled (their clients are quiet); if every one is
    /// busy, starts over: the map stays bounded whatever the sources.
    fn forget_idle(&mut self, now: Instant) {
        let (rate, burst) = (self.limits.rate as f32, self.limits.burst.max(1) as f32);
        self.buckets.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f32() * rate < burst
        });
        if self.buckets.len() >= MAX_CLIENTS {
            self.buckets.clear();
        }
    }
}

/// Who a limit counts as one client: an IPv4 address, or an IPv6 /64 (a device picks
/// new addresses in its /64 at will, so counting addresses would count nothing).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(Limits {
            rate,
            burst,
            exempt: vec!["127.0.0.0/8".parse().unwrap()],
        })
    }

    #[test]
    fn a_tablet_burst_passes_a_flood_does_not() {
        let mut l = limiter(500, 1000);
        let t0 = Instant::now();
        let tablet = IpAddr::from([10, 0, 0, 2]);
        // A news site: 100 queries in the same instant, every second for a minute.
        for s in 0..60 {
            let at = t0 + Duration::from_secs(s);
            assert!((0..100).all(|_| l.allow(tablet, at)), "second {s}");
        }
        let flood = IpAddr::from([10, 0, 0, 66]);
        let passed = (0..100_000).filter(|_| l.allow(flood, t0)).count();
        assert_eq!(passed, 1000, "the burst, then nothing");
        // Refills at the sustained rate.
        let later = t0 + Duration::from_millis(100);
        let passed = (0..1000).filter(|_| l.allow(flood, later)).count();
        assert_eq!(passed, 50);
        assert!(
            (0..10_000).all(|_| l.allow(IpAddr::from([127, 0, 0, 1]), t0)),
            "exempt"
        );
    }

    #[test]
    fn the_map_stays_bounded() {
        let mut l = limiter(10, 20);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 * 3) {
            l.allow(
                IpAddr::from(std::net::Ipv6Addr::from(
                    (0xfd00u128 << 112) | (u128::from(i) << 64),
                )),
                t0,
            );
        }
        assert!(l.buckets.len() <= MAX_CLIENTS);
    }

    #[test]
    fn one_ipv6_prefix_is_one_client() {
        let mut l = limiter(10, 20);
        let t0 = Instant::now();
        let passed = (0..1000u128)
            .filter(|i| {
                l.allow(
                    IpAddr::from(std::net::Ipv6Addr::from((0xfd00u128 << 112) | i)),
                    t0,
                )
            })
            .count();
        assert_eq!(passed, 20);
    }

    #[test]
    fn off_when_the_rate_is_zero() {
        let mut l = limiter(0, 0);
        assert!((0..10_000).all(|_| l.allow(IpAddr::from([10, 0, 0, 2]), Instant::now())));
    }
}
