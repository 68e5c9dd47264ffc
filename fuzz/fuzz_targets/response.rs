//! Arbitrary bytes as an upstream's response (rebinding check, cache entry) and as a
//! datagram to the server, which must never answer a response.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartable::fuzzing::response(data));
