//! Entry points for the fuzzers (`fuzz/`): everything that reads bytes from the
//! network or from a list file, driven with arbitrary input. A unit test runs them on
//! pseudo-random inputs too, so CI exercises them without a fuzzer.

use std::time::{Duration, Instant};

use crate::dns::cache::Entry;
use crate::dns::wire;

/// A datagram as a query, and as an upstream response: parse, cache, answer.
pub fn packet(data: &[u8]) {
    if let Ok(q) = wire::parse_query(data) {
        let _ = q.name_as_sent(data);
        let mut reply = wire::error_response(data, &q, wire::RCODE_REFUSED);
        wire::truncate(&mut reply, &q);
        let _ = wire::address_response(data, &q, &["0.0.0.0".parse().expect("address")], 60, false);
    }
    let _ = wire::records(data);
    let now = Instant::now();
    if let Some(entry) = Entry::from_response(data, now) {
        // Answer a well-formed query from it, as a cache hit would.
        if let Ok(q) = wire::parse_query(data) {
            let _ = entry.reply(data, &q, now + Duration::from_secs(5));
            let _ = entry.reply(data, &q, now + Duration::from_secs(1 << 20));
        }
    }
}

/// A list file's bytes.
pub fn list(data: &[u8]) {
    let parsed = crate::filter::list::parse(data);
    for n in &parsed.names {
        assert!(
            crate::filter::name::normalize(n).as_deref() == Some(n.as_str()),
            "parsed names are normalized"
        );
    }
}

#[cfg(test)]
mod tests {
    /// xorshift: the same inputs every run.
    fn inputs(count: usize, max_len: usize) -> Vec<Vec<u8>> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..count)
            .map(|_| {
                let len = (next() as usize) % max_len;
                (0..len).map(|_| next() as u8).collect()
            })
            .collect()
    }

    #[test]
    fn packets_never_panic() {
        for input in inputs(20_000, 600) {
            super::packet(&input);
        }
        // Valid headers with random bodies reach deeper.
        for mut input in inputs(20_000, 300) {
            if input.len() >= 12 {
                input[4..6].copy_from_slice(&[0, 1]);
                input[2] &= 0x7f;
            }
            super::packet(&input);
            if input.len() >= 12 {
                input[2] |= 0x80;
                input[3] &= 0xf0;
            }
            super::packet(&input);
        }
    }

    #[test]
    fn lists_never_panic() {
        for input in inputs(5_000, 2_000) {
            super::list(&input);
        }
        let printable: Vec<u8> = inputs(1, 100_000)[0]
            .iter()
            .map(|b| {
                let alphabet = b"abc.-_0123 #\n\r\t*/:A";
                alphabet[usize::from(*b) % alphabet.len()]
            })
            .collect();
        super::list(&printable);
    }
}
