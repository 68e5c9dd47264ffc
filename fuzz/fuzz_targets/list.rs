//! Arbitrary bytes as a block list file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartable::fuzzing::list(data));
