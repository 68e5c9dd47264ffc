//! UDP serving: one thread per core, each on its own `SO_REUSEPORT` socket, receiving
//! and answering in batches (`recvmmsg`, `sendmmsg`).
//!
//! Why not the async runtime: on a loaded box nearly all of a query's cost is the
//! kernel's, and a tokio socket adds an `epoll_wait`, a futex wake-up between workers
//! and a `recvfrom` that finds nothing, per burst, to the two calls a query needs. A
//! thread blocked in `recvmmsg` takes every datagram already queued in one call and
//! sends every answer made from them in one more; a client's sends do not wake a
//! sleeping reader while it is busy with the batch before. The kernel spreads clients
//! over the sockets by address, so one client's queries stay in order on one thread.
//!
//! Only what needs the upstream leaves the thread: it becomes a task on the runtime,
//! which sends its answer itself.

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, MultiHeaders, SockFlag, SockType, SockaddrStorage, sockopt,
};
use nix::sys::time::TimeVal;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, Step};
use super::front::{self, Front};
use super::ratelimit::RateLimiter;
use super::wire;

/// Datagrams taken (and answers sent) per system call.
const BATCH: usize = 32;
/// Largest query read; a bigger datagram is dropped (a query is a few dozen bytes).
const MAX_QUERY: usize = 4096;
/// How long a receiving thread waits before it looks whether the service is stopping.
const WAKE_EVERY: Duration = Duration::from_millis(200);
/// Receive buffer asked for: room for a burst from hundreds of tablets (the kernel
/// caps it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 4 << 20;

/// Threads (and sockets) per listening address: one per core, at most four.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// `count` UDP sockets sharing `addr` (`SO_REUSEPORT`); with port 0, all on the port
/// the first one got.
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<Vec<UdpSocket>> {
    let first = bind_one(addr)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    while sockets.len() < count {
        sockets.push(bind_one(addr)?);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    // Best effort: a smaller buffer only means drops under a burst.
    let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &RECV_BUFFER);
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    socket::setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::new(0, WAKE_EVERY.as_micros() as i64),
    )?;
    Ok(UdpSocket::from(fd))
}

/// Answers on `socket` until `shutdown`; runs on a thread of its own.
pub fn serve(
    socket: Arc<UdpSocket>,
    engine: Arc<Engine>,
    runtime: Handle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let fd = socket.as_raw_fd();
    let mut buffers = Box::new([[0u8; MAX_QUERY]; BATCH]);
    let mut in_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // (bytes, sender) of each datagram of the batch; `None` for one to skip.
    let mut received: Vec<Option<(usize, SocketAddr)>> = Vec::with_capacity(BATCH);
    let mut replies: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut to: Vec<SocketAddr> = Vec::with_capacity(BATCH);
    let mut limiter = RateLimiter::new(engine.limits().clone());
    let mut front = Front::default();
    let mut hashes: Vec<Option<u64>> = Vec::with_capacity(BATCH);
    while !shutdown.is_cancelled() {
        received.clear();
        {
            let mut slices = buffers.each_mut().map(|b| [IoSliceMut::new(b)]);
            let batch = match socket::recvmmsg(
                fd,
                &mut in_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(batch) => batch,
                // The receive timeout (time to look at `shutdown`), a signal, or an
                // ICMP error from an earlier answer: none is the socket's end.
                Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNREFUSED) => continue,
                Err(e) => return Err(e.into()),
            };
            for msg in batch {
                let whole = !msg.flags.contains(MsgFlags::MSG_TRUNC);
                let from = msg.address.as_ref().and_then(std_addr);
                received.push(from.filter(|_| whole).map(|a| (msg.bytes, a)));
            }
        }
        replies.clear();
        to.clear();
        // Every query's slot in the front table, then the entry each slot points to
        // (or the index slots its lookup reads), are asked for before the first query
        // is answered (see `dns::front`).
        hashes.clear();
        for (buffer, item) in buffers.iter().zip(&received) {
            let question = item.and_then(|(len, _)| front::question(&buffer[..len]));
            let hash = question.map(front::question_hash);
            if let Some(hash) = hash {
                front.prefetch_slot(hash);
            }
            hashes.push(hash);
        }
        let now = std::time::Instant::now();
        let mut batch = engine.batch_with(&mut front);
        for ((buffer, item), hash) in buffers.iter().zip(&received).zip(&hashes) {
            if let (Some((len, _)), Some(hash)) = (item, hash) {
                batch.prefetch(&buffer[wire::HEADER..*len], *hash);
            }
        }
        for ((buffer, item), question_hash) in buffers.iter().zip(&received).zip(&hashes) {
            let &Some((len, client)) = item else {
                batch.tally.malformed += 1;
                continue;
            };
            if !limiter.allow(client.ip(), now) {
                batch.tally.rate_limited += 1;
                continue;
            }
            let query = &buffer[..len];
            match engine.start_in(&mut batch, query, *question_hash, client.ip(), true) {
                Step::Done(Some(reply)) => {
                    replies.push(reply);
                    to.push(client);
                }
                Step::Done(None) => {}
                Step::Upstream(pending) => {
                    let (engine, socket, query) = (engine.clone(), socket.clone(), query.to_vec());
                    runtime.spawn(async move {
                        let reply = engine.finish(query, pending).await;
                        send_one(&socket, &reply, client);
                    });
                }
            }
        }
        drop(batch);
        send_all(&socket, &replies, &to);
    }
    Ok(())
}

/// Sends the batch's answers, as many per call as the kernel takes; one that cannot be
/// sent (the client's address unreachable, say) is skipped, not retried.
fn send_all(socket: &UdpSocket, replies: &[Vec<u8>], to: &[SocketAddr]) {
    let mut done = 0;
    while done < replies.len() {
        match cartable_sys::send_batch(socket.as_fd(), &replies[done..], &to[done..]) {
            Ok(sent) => done += sent.max(1),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(error = %e, "DNS answer not sent");
                done += 1;
            }
        }
    }
}

/// One answer from the runtime, never blocking it: with the socket's buffer full the
/// answer is dropped, as the network could have dropped it.
fn send_one(socket: &UdpSocket, reply: &[u8], to: SocketAddr) {
    let to = SockaddrStorage::from(to);
    if let Err(e) = socket::sendto(socket.as_raw_fd(), reply, &to, MsgFlags::MSG_DONTWAIT) {
        tracing::debug!(error = %e, "DNS answer not sent");
    }
}

/// The sender of a received datagram, as the standard library writes it.
pub fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        Some(SocketAddr::V4((*v4).into()))
    } else {
        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::engine::EngineConfig;
    use crate::dns::forward::Forwarder;
    use crate::filter::decide::Filter;
    use crate::filter::index::Index;
    use crate::filter::policy::{BlockMode, Policies, builtin};
    use std::net::IpAddr;

    /// An engine that knows one local name and has no upstream (a miss: SERVFAIL).
    fn engine() -> Arc<Engine> {
        let index = Arc::new(Index::empty());
        let policies = Policies::compile(&builtin(), &index, BlockMode::Nxdomain).unwrap();
        let local = [("box.test".to_string(), vec![IpAddr::from([10, 0, 0, 1])])].into();
        Arc::new(Engine::new(
            Filter { index, policies },
            Forwarder::new(Vec::new(), Duration::from_millis(200), None),
            EngineConfig::open(
                local,
                Duration::from_secs(60),
                crate::base::clock::Clock::system(jiff::tz::TimeZone::UTC),
            ),
        ))
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    /// Every query of a burst is answered once, with its own ID, on IPv4 and IPv6;
    /// a miss is answered from the runtime; the threads end on shutdown.
    #[test]
    fn answers_bursts_on_both_families_and_stops() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let engine = engine();
        let stop = CancellationToken::new();
        let mut threads = Vec::new();
        let mut addrs = Vec::new();
        for listen in ["127.0.0.1:0", "[::1]:0"] {
            let sockets = bind(listen.parse().unwrap(), 2).unwrap();
            addrs.push(sockets[0].local_addr().unwrap());
            for s in sockets {
                let (engine, handle, stop) =
                    (engine.clone(), runtime.handle().clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    serve(Arc::new(s), engine, handle, stop)
                }));
            }
        }
        for server in &addrs {
            let client = UdpSocket::bind(if server.is_ipv4() {
                "127.0.0.1:0"
            } else {
                "[::1]:0"
            })
            .unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            for id in 0..200u16 {
                client.send_to(&query(id, "box.test"), server).unwrap();
            }
            client.send_to(&query(999, "unknown.test"), server).unwrap();
            let mut ids = Vec::new();
            let mut buf = [0u8; 512];
            let mut servfail = false;
            while ids.len() < 200 || !servfail {
                let (n, from) = client.recv_from(&mut buf).expect("every query is answered");
                assert_eq!(from, *server);
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                if id == 999 {
                    assert_eq!(buf[3] & 0x0f, 2, "a miss with no upstream is SERVFAIL");
                    servfail = true;
                    continue;
                }
                assert_eq!(&buf[n - 4..n], &[10, 0, 0, 1], "the local name's address");
                ids.push(id);
            }
            ids.sort_unstable();
            assert_eq!(ids, (0..200).collect::<Vec<_>>());
        }
        stop.cancel();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    }

    #[test]
    fn sockets_share_the_port_the_first_got() {
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = sockets[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap().port(), port);
        }
    }

    #[test]
    fn addresses_convert_both_ways() {
        for a in ["127.0.0.1:53", "[::1]:5353"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(std_addr(&SockaddrStorage::from(a)), Some(a));
        }
    }
}
