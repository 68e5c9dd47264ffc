//! Arbitrary bytes as a DNS-over-TCP client's stream, through the server's real
//! connection handler.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartable::fuzzing::tcp_stream(data));
