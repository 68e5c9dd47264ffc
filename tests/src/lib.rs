//! The system-test harness: real peers (DNS servers and clients, brokers, browsers)
//! started on loopback or in network namespaces the tests create, and children always
//! reaped.
#![forbid(unsafe_code)]

pub mod appliance;
pub mod bins;
pub mod blackhole;
pub mod browser;
pub mod cart;
pub mod central;
pub mod child;
pub mod dig;
pub mod dnsmasq;
pub mod fleet;
pub mod mosquitto;
pub mod net;
pub mod netns;
pub mod postgres;
pub mod tls;
pub mod tool;
pub mod unbound;
pub mod upstream;

/// A xorshift64 sequence from `seed`: the generators' repeatable randomness.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// `len` bytes that neither compress nor repeat (xorshift64 from `seed`): garbage for
/// a parser, or the body of a firmware bundle for a chunker.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
