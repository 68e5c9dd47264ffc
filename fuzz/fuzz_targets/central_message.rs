//! Arbitrary messages on a box's topics, sealed or not, through central's checks and store.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartable_central::fuzzing::message(data));
