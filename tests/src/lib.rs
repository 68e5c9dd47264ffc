//! The system-test harness: real peers (brokers, DNS servers, browsers) started on
//! loopback or in network namespaces the tests create, and children always reaped.
#![forbid(unsafe_code)]

pub mod bins;
pub mod child;
