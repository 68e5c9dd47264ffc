//! Arbitrary datagrams through the DNS answer path's parsing, caching and patching.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartable::fuzzing::packet(data));
