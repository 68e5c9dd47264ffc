//! The DNS server's two other doors for untrusted bytes: what an upstream (or anyone
//! spoofing one) sends back, and a TCP client's stream.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::cache::Entry;
use crate::dns::engine::{Engine, EngineConfig, Step};
use crate::dns::forward::Forwarder;
use crate::dns::ratelimit::Limits;
use crate::dns::{rebind, server, wire};
use crate::filter::decide::Filter;
use crate::filter::index::Index;
use crate::filter::policy::{BlockMode, Policies, builtin};

/// One engine for every run: built-in policies, no upstream (a miss is SERVFAIL), the
/// rebinding check and a rate limit on, one local name.
fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let index = Arc::new(Index::empty());
            let policies =
                Policies::compile(&builtin(), &index, BlockMode::Nxdomain).expect("built-in");
            let config = crate::config::DnsConfig::default();
            Arc::new(Engine::new(
                Filter { index, policies },
                Forwarder::new(Vec::new(), Duration::from_millis(10), None),
                EngineConfig {
                    local: [("box.lan".to_string(), vec![IpAddr::from([10, 0, 0, 1])])].into(),
                    box_addresses: vec![IpAddr::from([10, 0, 0, 1])],
                    cache_entries: 1000,
                    max_stale: Duration::from_secs(3600),
                    clock: crate::base::clock::Clock::system(jiff::tz::TimeZone::UTC),
                    query_log: 100,
                    allow_clients: config.allow_clients,
                    rebind: rebind::Rebind::new(true, &config.rebind_allow),
                    limits: Limits {
                        rate: 1_000_000,
                        burst: 1_000_000,
                        exempt: Vec::new(),
                    },
                },
            ))
        })
        .clone()
}

/// Bytes as an upstream's response: the rebinding check, the cache's entry and its
/// replies; and as a datagram to the server, which never answers a response.
pub fn response(data: &[u8]) {
    let _ = rebind::private_answer(data);
    let now = std::time::Instant::now();
    if let Some(entry) = Entry::from_response(data, now)
        && let Ok(q) = wire::parse_query(data)
    {
        let _ = entry.reply(data, &q, now);
    }
    let engine = engine();
    let client = IpAddr::from([192, 168, 1, 20]);
    match engine.start(data, client, true) {
        Step::Done(Some(reply)) => {
            assert!(
                data.get(2).is_some_and(|f| f & 0x80 == 0),
                "a response was answered"
            );
            assert!(
                reply.len() >= 12 && reply[2] & 0x80 != 0,
                "replies are responses"
            );
            assert_eq!(reply[..2], data[..2], "the reply keeps the ID");
        }
        Step::Done(None) | Step::Upstream(_) => {}
    }
}

/// A TCP client's whole stream: every reply is framed, and a response in the stream
/// ends the connection rather than being answered.
pub fn tcp_stream(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let engine = engine();
        let shared = server::TcpShared::new(&engine);
        let (client, server_side) = tokio::io::duplex(1 << 16);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let peer = SocketAddr::from(([192, 168, 1, 20], 40000));
        // The client writes its stream and closes its side while the server answers
        // and the client reads: neither waits on a full buffer.
        let client = async {
            // The server may close first (a response, a bad frame): then writes fail.
            let _ = to_server.write_all(data).await;
            let _ = to_server.shutdown().await;
        };
        let reader = async {
            let mut out = Vec::new();
            from_server.read_to_end(&mut out).await.expect("in memory");
            out
        };
        let server = async {
            server::tcp_connection(server_side, peer, engine, &shared).await;
        };
        let ((), out, ()) = tokio::join!(client, reader, server);
        let mut at = 0;
        while at < out.len() {
            let len = usize::from(u16::from_be_bytes([out[at], out[at + 1]]));
            let reply = &out[at + 2..at + 2 + len];
            assert!(
                reply.len() >= 12 && reply[2] & 0x80 != 0,
                "framed responses"
            );
            at += 2 + len;
        }
    });
}
