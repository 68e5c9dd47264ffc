//! Entry points for the fuzzers (`fuzz/`): everything that reads bytes from the
//! network or from a list file, driven with arbitrary input. A unit test runs them on
//! pseudo-random inputs too, so CI exercises them without a fuzzer.

mod dns;
mod http;

use std::time::{Duration, Instant};

pub use dns::{response, tcp_stream};
pub use http::request as http_request;

use crate::dns::cache::Entry;
use crate::dns::wire;

/// A datagram as a query, and as an upstream response: parse, cache, answer.
pub fn packet(data: &[u8]) {
    if let Ok(q) = wire::parse_query(data) {
        let _ = q.name_as_sent(data);
        let mut reply = wire::error_response(data, &q, wire::RCODE_REFUSED);
        wire::truncate(&mut reply, &q);
        let _ = wire::address_response(data, &q, &["0.0.0.0".parse().expect("address")], 60, false);
    }
    let _ = wire::records(data);
    let now = Instant::now();
    if let Some(entry) = Entry::from_response(data, now) {
        // Answer a well-formed query from it, as a cache hit would.
        if let Ok(q) = wire::parse_query(data) {
            let _ = entry.reply(data, &q, now + Duration::from_secs(5));
            let _ = entry.reply(data, &q, now + Duration::from_secs(1 << 20));
        }
    }
}

/// A frame from a tablet on the device WebSocket, and one to it: parsed, and what
/// parses serializes back to the same message.
pub fn device_frame(data: &[u8]) {
    use cartable_protocol::device::{self, FromDevice, ToDevice};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = device::parse_from_device(text) {
        let again = serde_json::to_string(&m).expect("a parsed message serializes");
        assert_eq!(
            serde_json::from_str::<FromDevice>(&again).ok().as_ref(),
            Some(&m),
            "{text}"
        );
    }
    if let Ok(ToDevice::Command { action, .. }) = serde_json::from_str::<ToDevice>(text) {
        let _ = action.apply_to(&mut device::DesiredState::default());
    }
}

/// A datagram to the cart's DHCP server: decoded (dhcproto), decided, answered.
pub fn dhcp(data: &[u8]) {
    crate::net::dhcp::handle_for_fuzzing(data);
}

/// A list file's bytes.
pub fn list(data: &[u8]) {
    let parsed = crate::filter::list::parse(data);
    for n in &parsed.names {
        assert!(
            crate::filter::name::normalize(n).as_deref() == Some(n.as_str()),
            "parsed names are normalized"
        );
    }
}

#[cfg(test)]
mod tests {
    /// xorshift: the same inputs every run.
    fn inputs(count: usize, max_len: usize) -> Vec<Vec<u8>> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..count)
            .map(|_| {
                let len = (next() as usize) % max_len;
                (0..len).map(|_| next() as u8).collect()
            })
            .collect()
    }

    #[test]
    fn packets_never_panic() {
        for input in inputs(20_000, 600) {
            super::packet(&input);
        }
        // Valid headers with random bodies reach deeper.
        for mut input in inputs(20_000, 300) {
            if input.len() >= 12 {
                input[4..6].copy_from_slice(&[0, 1]);
                input[2] &= 0x7f;
            }
            super::packet(&input);
            if input.len() >= 12 {
                input[2] |= 0x80;
                input[3] &= 0xf0;
            }
            super::packet(&input);
        }
    }

    #[test]
    fn dhcp_messages_never_panic() {
        for mut input in inputs(20_000, 600) {
            super::dhcp(&input);
            // A request's header and the cookie: the options reach the decisions.
            if input.len() >= 244 {
                input[..4].copy_from_slice(&[1, 1, 6, 0]);
                input[24..28].fill(0);
                input[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
                input[240] = 53;
                input[241] = 1;
                input[242] = input[242] % 8 + 1;
            }
            super::dhcp(&input);
        }
    }

    #[test]
    fn responses_and_tcp_streams_never_panic() {
        for mut input in inputs(5_000, 400) {
            super::response(&input);
            if input.len() >= 12 {
                input[2] |= 0x80;
                input[6..8].copy_from_slice(&[0, 1]);
            }
            super::response(&input);
        }
        for input in inputs(2_000, 600) {
            super::tcp_stream(&input);
        }
        // Well-framed queries, and one response among them.
        let mut framed = Vec::new();
        for (i, q) in inputs(50, 80).into_iter().enumerate() {
            let mut q = q;
            if q.len() >= 12 {
                q[2] = if i % 7 == 0 { 0x81 } else { 0x01 };
                q[4..6].copy_from_slice(&[0, 1]);
            }
            framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
            framed.extend_from_slice(&q);
        }
        super::tcp_stream(&framed);
    }

    #[test]
    fn lists_never_panic() {
        for input in inputs(5_000, 2_000) {
            super::list(&input);
        }
        let printable: Vec<u8> = inputs(1, 100_000)[0]
            .iter()
            .map(|b| {
                let alphabet = b"abc.-_0123 #\n\r\t*/:A";
                alphabet[usize::from(*b) % alphabet.len()]
            })
            .collect();
        super::list(&printable);
    }

    /// Bodies a client would send, to mutate: deeper than random bytes.
    const BODIES: &[&str] = &[
        r#"{"login":"c.martin","password":"fuzzing-password"}"#,
        r#"{"code":"ABCD2345","name":"tab-01"}"#,
        r#"{"action":{"type":"allow_list_only","domains":["a.fr","b.fr"]},"targets":[1]}"#,
        r#"{"action":{"type":"lock"}}"#,
        r#"{"present":[1],"absent":[]}"#,
        r#"{"name":"g","devices":[1,2]}"#,
        r#"{"minutes_per_day":45,"days":["mon-fri"],"from":"08:30","to":"16:30"}"#,
        r#"{"name":"cm1-tab-01","class":"CM1-A"}"#,
        r#"{"pupil":1}"#,
        "class,level\nCE2,CE2\nfirst_name,last_name,class\nA,B,CE2\n",
        r#"{"login":"it","password":"long enough password"}"#,
        r#"{"deviceId":"0123456789abcdefghijklmn","batteryLevel":300,"model":"x"}"#,
    ];

    #[test]
    fn http_requests_never_panic_nor_fail_inside() {
        let mut n = 0usize;
        for (i, input) in inputs(3_000, 64).into_iter().enumerate() {
            let seed = BODIES[i % BODIES.len()].as_bytes();
            let mut body = seed.to_vec();
            // Flip a few bytes, cut the tail, or append noise.
            for (k, b) in input.iter().enumerate().skip(3) {
                match b % 4 {
                    0 if !body.is_empty() => {
                        let at = usize::from(*b) * 7 % body.len();
                        body[at] = input[k - 1];
                    }
                    1 => body.truncate(body.len().saturating_sub(usize::from(*b % 5))),
                    _ => {}
                }
            }
            let mut data = vec![i as u8, input.first().copied().unwrap_or(0), 1];
            data.extend(if i % 5 == 0 { input.clone() } else { body });
            super::http_request(&data);
            n += 1;
        }
        assert_eq!(n, 3_000);
    }

    #[test]
    fn device_frames_never_panic() {
        for input in inputs(5_000, 300) {
            super::device_frame(&input);
        }
        for frame in [
            r#"{"type":"hello","v":1}"#,
            r#"{"type":"ack","id":3}"#,
            r#"{"type":"command","id":1,"action":{"type":"allow_list_only","domains":["x"]}}"#,
        ] {
            super::device_frame(frame.as_bytes());
        }
    }
}
