//! Arbitrary datagrams to the cart's DHCP server: decoded, decided, answered.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartable::fuzzing::dhcp(data));
