//! Arbitrary requests to the hub's HTTP API (JSON and CSV bodies, Headwind's calls):
//! no panic, no 500.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartable::fuzzing::http_request(data));
