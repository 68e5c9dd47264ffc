//! The cart's DHCPv4 server (service `dhcp`): the socket on the LAN bridge, messages
//! read and written by `dhcproto` (no wire format of our own), the decisions in
//! [`pool`], the leases in the store ([`leases`]).
//!
//! An ACK goes out only once its lease is committed, so a tablet never holds an
//! address the box would forget at a power cut; offers, which commit nothing, are
//! answered from memory at once. Replies are broadcast on the bridge (the socket is
//! bound to it) unless the tablet already has its address (renewing: unicast), which
//! every client takes (Android's, dhclient, udhcpc read replies off a raw socket).
//! Relayed messages and anything that is not a well-formed Ethernet BOOTREQUEST are
//! dropped and counted: the server answers its own LAN and nothing else.

pub(crate) mod leases;
pub(crate) mod pool;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode};
use dhcproto::{Decodable, Encodable};
use serde::Serialize;

use crate::base::clock::Clock;
use crate::config::{Ipv4Net, Mac};
use crate::store::Store;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};
use pool::{Ask, AskKind, Decision, Lease, Pool};

/// The largest message read: a DHCP message fits an Ethernet frame.
const MAX_MESSAGE: usize = 1500;
/// Messages being answered at once (an ACK waits for its commit); past it a message
/// is dropped and counted, and its client asks again.
const IN_FLIGHT: usize = 256;

/// What the server counts, for the admin.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    malformed: AtomicU64,
    ignored: AtomicU64,
    offers: AtomicU64,
    acks: AtomicU64,
    naks: AtomicU64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct CountersView {
    pub received: u64,
    pub malformed: u64,
    pub ignored: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
}

impl Counters {
    fn view(&self) -> CountersView {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersView {
            received: g(&self.received),
            malformed: g(&self.malformed),
            ignored: g(&self.ignored),
            offers: g(&self.offers),
            acks: g(&self.acks),
            naks: g(&self.naks),
        }
    }
}

fn add(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The options every answer carries, fixed at build.
#[derive(Debug, Clone)]
pub(crate) struct Offerings {
    pub lan: Ipv4Net,
    /// RFC 8910's captive-portal URI, if any.
    pub captive_portal: Option<String>,
}

/// The DHCP server; its socket is bound when it is built.
pub(crate) struct DhcpServer {
    socket: std::net::UdpSocket,
    pool: Mutex<Pool>,
    offerings: Offerings,
    store: Store,
    clock: Clock,
    counters: Arc<Counters>,
    /// The lease table as the rest of the box sees it.
    table: tokio::sync::watch::Sender<Vec<Lease>>,
}

impl DhcpServer {
    /// Binds port 67 on `bridge` and reads the stored leases back.
    pub(crate) fn bind(
        bridge: &str,
        port: u16,
        mut pool: Pool,
        offerings: Offerings,
        store: Store,
        clock: Clock,
    ) -> anyhow::Result<DhcpServer> {
        let socket = bound_socket(bridge, port)?;
        let stored = leases::load(&store)?;
        let (mut kept, mut dropped) = (0, 0);
        for l in stored {
            if pool.restore(l) {
                kept += 1;
            } else {
                dropped += 1;
            }
        }
        tracing::info!(kept, dropped, "DHCP leases read back");
        let table = tokio::sync::watch::Sender::new(pool.leases().cloned().collect());
        Ok(DhcpServer {
            socket,
            pool: Mutex::new(pool),
            offerings,
            store,
            clock,
            counters: Arc::default(),
            table,
        })
    }

    pub(crate) fn counters(&self) -> CountersView {
        self.counters.view()
    }

    /// The leases, on every change (the hub and the filter follow tablets by MAC).
    pub(crate) fn table(&self) -> tokio::sync::watch::Receiver<Vec<Lease>> {
        self.table.subscribe()
    }

    /// Reads one datagram's message, counting what is not one.
    fn read(&self, bytes: &[u8]) -> Option<(Message, Ask)> {
        add(&self.counters.received);
        let Some(msg) = decode(bytes) else {
            add(&self.counters.malformed);
            return None;
        };
        match ask_of(&msg) {
            Ok(ask) => Some((msg, ask)),
            Err(why) => {
                tracing::debug!(why, "DHCP message dropped");
                if why.starts_with("relayed") {
                    add(&self.counters.ignored);
                } else {
                    add(&self.counters.malformed);
                }
                None
            }
        }
    }

    async fn answer(self: &Arc<Self>, msg: Message, ask: Ask, socket: &Arc<tokio::net::UdpSocket>) {
        let now = u64::try_from(self.clock.unix()).unwrap_or(0);
        let (decision, lease_secs) = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            (pool.decide(&ask, now), pool.lease_secs())
        };
        let (kind, yiaddr) = match &decision {
            Decision::Offer(a) => {
                add(&self.counters.offers);
                (MessageType::Offer, *a)
            }
            Decision::Ack(lease) => {
                if let Err(e) = leases::put(&self.store, lease.clone()).await {
                    tracing::warn!(error = %e, mac = %lease.mac, "cannot store a DHCP lease; no ACK");
                    return;
                }
                add(&self.counters.acks);
                self.publish();
                tracing::debug!(mac = %lease.mac, address = %lease.address, "DHCP lease");
                (MessageType::Ack, lease.address)
            }
            Decision::Inform => (MessageType::Ack, Ipv4Addr::UNSPECIFIED),
            Decision::Nak(why) => {
                add(&self.counters.naks);
                tracing::debug!(mac = %ask.mac, why, "DHCP NAK");
                (MessageType::Nak, Ipv4Addr::UNSPECIFIED)
            }
            Decision::Silent(why) => {
                if matches!(ask.kind, AskKind::Release | AskKind::Decline) {
                    self.release(ask.mac).await;
                }
                tracing::debug!(mac = %ask.mac, why, "DHCP: no answer");
                return;
            }
        };
        let reply = reply(&msg, kind, yiaddr, lease_secs, &self.offerings);
        let Ok(bytes) = reply.to_vec() else { return };
        let to = if kind != MessageType::Nak && msg.ciaddr() != Ipv4Addr::UNSPECIFIED {
            SocketAddrV4::new(msg.ciaddr(), 68)
        } else {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
        };
        if let Err(e) = socket.send_to(&bytes, SocketAddr::V4(to)).await {
            tracing::debug!(error = %e, %to, "DHCP reply not sent");
        }
    }

    /// A released or declined lease: the store follows the table.
    async fn release(&self, mac: Mac) {
        let gone = {
            let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.leases().find(|l| l.mac == mac).cloned()
        };
        let result = match gone {
            Some(l) => leases::put(&self.store, l).await,
            None => leases::remove(&self.store, mac).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, %mac, "cannot store a DHCP release");
        }
        self.publish();
    }

    fn publish(&self) {
        let leases: Vec<Lease> = {
            let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.leases().cloned().collect()
        };
        self.table.send_replace(leases);
    }

    /// The leases for the admin, soonest to expire first.
    pub(crate) fn leases(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self.table.borrow().clone();
        v.sort_by_key(|l| (l.expires, l.address));
        v
    }
}

/// The message in `bytes`, if it is one: its options laid out as RFC 2132 says
/// first (dhcproto reads some options at their expected size whatever length they
/// declare, and checks a few lengths with `debug_assert!` only: a message that would
/// desynchronize or stop it never reaches it), and a panic inside the decoder, should
/// another one hide there, is a malformed message too, never a dead server.
fn decode(bytes: &[u8]) -> Option<Message> {
    if !options_well_formed(bytes) {
        return None;
    }
    std::panic::catch_unwind(|| Message::from_bytes(bytes).ok()).ok()?
}

/// The fixed header, the cookie, then options each inside the datagram, with the
/// lengths their codes require, and no overload of `sname`/`file` (option 52).
fn options_well_formed(bytes: &[u8]) -> bool {
    const OPTIONS: usize = 240;
    if bytes.len() < OPTIONS || bytes[236..240] != [0x63, 0x82, 0x53, 0x63] {
        return false;
    }
    let mut i = OPTIONS;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => return true,
            code => {
                let Some(&len) = bytes.get(i + 1) else {
                    return false;
                };
                let fits = match code {
                    52 => false,
                    53 => len == 1,
                    57 => len == 2,
                    50 | 51 | 54 | 58 | 59 | 152..=155 => len == 4,
                    80 => len == 0,
                    94 => len == 3,
                    81 => len >= 3,
                    151 => len >= 1,
                    _ => true,
                };
                i += 2 + usize::from(len);
                if !fits || i > bytes.len() {
                    return false;
                }
            }
        }
    }
    // No end option: dhcproto reads to the end of the datagram.
    true
}

/// One datagram through everything the server does with it but the socket and the
/// store: decode, read the ask, decide on a small pool, encode the reply and decode
/// it back (the fuzzers' entry point).
pub(crate) fn handle_for_fuzzing(bytes: &[u8]) {
    let Some(msg) = decode(bytes) else {
        return;
    };
    let Ok(ask) = ask_of(&msg) else { return };
    let lan = Ipv4Net::try_from("10.42.0.1/24".to_string()).expect("a valid LAN");
    let mut pool = Pool::new(
        lan,
        (Ipv4Addr::new(10, 42, 0, 100), Ipv4Addr::new(10, 42, 0, 103)),
        3600,
        [],
    );
    let offerings = Offerings {
        lan,
        captive_portal: Some("http://10.42.0.1/captive-portal/api".into()),
    };
    for now in [0, 10, 7200] {
        let (kind, yiaddr) = match pool.decide(&ask, now) {
            Decision::Offer(a) => (MessageType::Offer, a),
            Decision::Ack(l) => (MessageType::Ack, l.address),
            Decision::Inform => (MessageType::Ack, Ipv4Addr::UNSPECIFIED),
            Decision::Nak(_) => (MessageType::Nak, Ipv4Addr::UNSPECIFIED),
            Decision::Silent(_) => continue,
        };
        let bytes = reply(&msg, kind, yiaddr, 3600, &offerings)
            .to_vec()
            .expect("a reply encodes");
        let back = Message::from_bytes(&bytes).expect("a reply decodes");
        assert_eq!(back.opts().msg_type(), Some(kind));
    }
}

/// What a client asks, or why its message is not one the server answers.
fn ask_of(msg: &Message) -> Result<Ask, &'static str> {
    if msg.opcode() != Opcode::BootRequest {
        return Err("not a request");
    }
    if msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err("not an Ethernet client");
    }
    if msg.giaddr() != Ipv4Addr::UNSPECIFIED {
        return Err("relayed: the server answers its own LAN only");
    }
    let kind = match msg.opts().msg_type() {
        Some(MessageType::Discover) => AskKind::Discover,
        Some(MessageType::Request) => AskKind::Request,
        Some(MessageType::Release) => AskKind::Release,
        Some(MessageType::Decline) => AskKind::Decline,
        Some(MessageType::Inform) => AskKind::Inform,
        _ => return Err("no message type a server answers"),
    };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&msg.chaddr()[..6]);
    let opt_ip = |code| match msg.opts().get(code) {
        Some(DhcpOption::RequestedIpAddress(a)) | Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    };
    let hostname = match msg.opts().get(dhcproto::v4::OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => h
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .take(63)
            .collect(),
        _ => String::new(),
    };
    Ok(Ask {
        kind,
        mac: Mac(mac),
        requested: opt_ip(dhcproto::v4::OptionCode::RequestedIpAddress),
        ciaddr: msg.ciaddr(),
        server_id: opt_ip(dhcproto::v4::OptionCode::ServerIdentifier),
        hostname,
    })
}

/// The server's reply to `req` (RFC 2131, table 3).
fn reply(
    req: &Message,
    kind: MessageType,
    yiaddr: Ipv4Addr,
    lease_secs: u64,
    o: &Offerings,
) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_chaddr(&req.chaddr()[..6])
        .set_yiaddr(yiaddr);
    if kind != MessageType::Nak {
        m.set_ciaddr(req.ciaddr());
    }
    let box_ip = o.lan.addr;
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(box_ip));
    if kind == MessageType::Nak {
        return m;
    }
    if yiaddr != Ipv4Addr::UNSPECIFIED {
        let secs = u32::try_from(lease_secs).unwrap_or(u32::MAX);
        opts.insert(DhcpOption::AddressLeaseTime(secs));
        opts.insert(DhcpOption::Renewal(secs / 2));
        opts.insert(DhcpOption::Rebinding(secs / 8 * 7));
    }
    opts.insert(DhcpOption::SubnetMask(o.lan.mask()));
    opts.insert(DhcpOption::BroadcastAddr(o.lan.broadcast()));
    opts.insert(DhcpOption::Router(vec![box_ip]));
    opts.insert(DhcpOption::DomainNameServer(vec![box_ip]));
    if let Some(uri) = &o.captive_portal {
        opts.insert(DhcpOption::CaptivePortal(uri.clone()));
    }
    m
}

/// UDP port `port` on every address, bound to `bridge` (replies go out there only),
/// allowed to broadcast.
fn bound_socket(bridge: &str, port: u16) -> anyhow::Result<std::net::UdpSocket> {
    use anyhow::Context;
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .context("DHCP socket")?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
    setsockopt(&fd, sockopt::Broadcast, &true).context("SO_BROADCAST")?;
    setsockopt(
        &fd,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(bridge),
    )
    .with_context(|| format!("binding the DHCP socket to {bridge}"))?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(0, 0, 0, 0, port),
    )
    .with_context(|| format!("binding UDP port {port} on {bridge}"))?;
    Ok(std::net::UdpSocket::from(fd))
}

impl Service for DhcpServer {
    fn name(&self) -> &'static str {
        "dhcp"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let socket = Arc::new(tokio::net::UdpSocket::from_std(self.socket.try_clone()?)?);
            ctx.ready();
            let mut buf = vec![0u8; MAX_MESSAGE];
            let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
            loop {
                let (n, _from) = tokio::select! {
                    r = socket.recv_from(&mut buf) => r?,
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                };
                let Some((msg, ask)) = self.read(&buf[..n]) else {
                    continue;
                };
                // An ACK waits for its commit: the next message is read meanwhile.
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    add(&self.counters.ignored);
                    continue;
                };
                let (server, socket) = (self.clone(), socket.clone());
                tokio::spawn(async move {
                    server.answer(msg, ask, &socket).await;
                    drop(permit);
                });
            }
        })
    }
}
