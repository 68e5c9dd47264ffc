//! Waits between attempts: doubling from a first wait to a cap, each drawn uniformly
//! below the current ceiling ("full jitter"), so a fleet of boxes spreads out after a
//! broker restart instead of knocking again in the same second. Used by the sync
//! link, the cache's prefetcher and the supervisor's restarts.

use std::time::Duration;

/// `first` doubled `attempt` times, at most `cap`: the ceiling of the n-th wait, and
/// the supervisor's restart delay (a local service needs no jitter).
pub(crate) fn doubling(first: Duration, cap: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1 << attempt.min(16)).min(cap)
}

/// One sequence of waits; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    ceiling: Duration,
    cap: Duration,
    rng: u64,
}

impl Backoff {
    /// Waits from about `first` up to `cap`; `seed` decorrelates the jitter of
    /// processes started together (hash the box's id and the pid into it).
    pub(crate) fn new(first: Duration, cap: Duration, seed: u64) -> Backoff {
        let first = first.max(Duration::from_millis(1));
        Backoff {
            first,
            ceiling: first,
            cap: cap.max(first),
            rng: seed | 1,
        }
    }

    /// A seed that differs between processes and between the keys given.
    pub(crate) fn seed(key: impl std::hash::Hash) -> u64 {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one((key, std::process::id()))
    }

    pub(crate) fn reset(&mut self) {
        self.ceiling = self.first;
    }

    /// The next wait: a fifth of the first wait, plus a random part below the ceiling.
    pub(crate) fn next_wait(&mut self) -> Duration {
        // xorshift64: jitter needs spread, not secrecy.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let ms = self.ceiling.as_millis() as u64;
        let floor = self.first.as_millis() as u64 / 5;
        let wait = Duration::from_millis(floor + self.rng % ms.max(1));
        self.ceiling = (self.ceiling * 2).min(self.cap);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_grows_and_is_capped() {
        let d = |a| doubling(Duration::from_millis(200), Duration::from_secs(30), a);
        assert_eq!(d(0), Duration::from_millis(200));
        assert_eq!(d(1), Duration::from_millis(400));
        assert_eq!(d(20), Duration::from_secs(30));
    }

    #[test]
    fn backoff_grows_to_its_cap_and_spreads_boxes_apart() {
        let second = Duration::from_secs(1);
        let mut a = Backoff::new(second, Duration::from_secs(60), 1);
        let waits: Vec<Duration> = (0..12).map(|_| a.next_wait()).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(60_200)));
        assert!(waits[8..].iter().any(|w| *w > Duration::from_secs(10)));
        // 100 boxes after a broker restart: their first waits at the cap are spread.
        let firsts: std::collections::BTreeSet<u128> = (0..100u64)
            .map(|seed| {
                let mut b = Backoff::new(second, Duration::from_secs(60), seed * 7919 + 3);
                for _ in 0..7 {
                    b.next_wait();
                }
                b.next_wait().as_secs() as u128
            })
            .collect();
        assert!(firsts.len() > 20, "{firsts:?}");
        a.reset();
        assert!(a.next_wait() <= Duration::from_millis(1200));
    }

    #[test]
    fn a_short_first_wait_stays_short() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(30), 7);
        assert!(b.next_wait() <= Duration::from_millis(240));
        let later: Vec<Duration> = (0..20).map(|_| b.next_wait()).collect();
        assert!(later.iter().all(|w| *w <= Duration::from_millis(30_040)));
    }
}
