//! Arbitrary frames on the device protocol, both ways.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartable::fuzzing::device_frame(data));
