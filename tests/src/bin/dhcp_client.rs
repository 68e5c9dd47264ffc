//! A DHCPv4 client for tests and the DHCP bench, whose messages are Android's, byte
//! for byte: the NetworkStack module's `DhcpPacket.fillInPacket` (BOOTP header, flags
//! 0 for `DO_UNICAST`, the cookie, an even length) and `DhcpDiscoverPacket` /
//! `DhcpRequestPacket.finishPacket` (options 53, 61 = 01+MAC, 50 and 54 on a
//! REQUEST, then `addCommonClientTlvs`: 57 = 1500, 60 = "android-dhcp-14", 12 =
//! hostname; 55 = `DhcpClient.getRequestedParams()` with 114 and 108; 80 rapid commit
//! on the first DISCOVERs), and replies read as `DhcpClient.isValidPacket` and
//! `DhcpPacket.toDhcpResults` read them (xid, chaddr, a contiguous mask, a server id).
//!
//! `dhcp-client android IFACE MAC HOSTNAME`: one exchange; prints the lease as JSON.
//! `dhcp-client load IFACE CLIENTS WINDOW [TAG]`: that many clients (MACs 02:TAG:...,
//! TAG cc by default),
//! WINDOW in flight, broadcast flag set (so any server's answer reaches the one
//! socket); prints leases per second and the last lease's latency.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
};

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
/// `DhcpClient.DEFAULT_REQUESTED_PARAMS`, then 114 (captive portal) and 108
/// (IPv6-only preferred), as `getRequestedParams()` writes them.
const PRL: &[u8] = &[1, 3, 6, 15, 26, 28, 51, 58, 59, 43, 114, 108];
const VENDOR: &str = "android-dhcp-14";

/// What one of Android's messages carries.
#[derive(Clone, Copy)]
struct Ask<'a> {
    kind: u8,
    xid: u32,
    mac: [u8; 6],
    broadcast: bool,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    hostname: &'a str,
    rapid_commit: bool,
}

impl<'a> Ask<'a> {
    fn discover(xid: u32, mac: [u8; 6], broadcast: bool, hostname: &'a str) -> Ask<'a> {
        Ask {
            kind: DISCOVER,
            xid,
            mac,
            broadcast,
            requested: None,
            server: None,
            hostname,
            rapid_commit: false,
        }
    }

    fn request(self, requested: Ipv4Addr, server: Option<Ipv4Addr>) -> Ask<'a> {
        Ask {
            kind: REQUEST,
            requested: Some(requested),
            server,
            rapid_commit: false,
            ..self
        }
    }
}

/// A DISCOVER or REQUEST as Android builds it (ENCAP_BOOTP payload).
fn android_message(a: &Ask<'_>) -> Vec<u8> {
    let Ask {
        kind,
        xid,
        mac,
        broadcast,
        requested,
        server,
        hostname,
        rapid_commit,
    } = *a;
    let mut b = Vec::with_capacity(400);
    b.extend_from_slice(&[1, 1, 6, 0]); // BOOTREQUEST, Ethernet, hlen, hops
    b.extend_from_slice(&xid.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes()); // secs
    b.extend_from_slice(&(if broadcast { 0x8000u16 } else { 0 }).to_be_bytes());
    b.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    b.extend_from_slice(&mac);
    b.extend_from_slice(&[0; 10 + 64 + 128]); // chaddr padding, sname, file
    b.extend_from_slice(&0x6382_5363u32.to_be_bytes());
    b.extend_from_slice(&[53, 1, kind]);
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&mac);
    tlv(&mut b, 61, &client_id);
    if kind == REQUEST {
        if let Some(r) = requested {
            tlv(&mut b, 50, &r.octets());
        }
        if let Some(s) = server {
            tlv(&mut b, 54, &s.octets());
        }
    }
    tlv(&mut b, 57, &1500u16.to_be_bytes());
    tlv(&mut b, 60, VENDOR.as_bytes());
    if !hostname.is_empty() {
        tlv(&mut b, 12, hostname.as_bytes());
    }
    tlv(&mut b, 55, PRL);
    if kind == DISCOVER && rapid_commit {
        b.extend_from_slice(&[80, 0]);
    }
    b.push(255);
    if b.len() % 2 == 1 {
        b.push(0);
    }
    b
}

fn tlv(b: &mut Vec<u8>, code: u8, value: &[u8]) {
    b.push(code);
    b.push(value.len() as u8);
    b.extend_from_slice(value);
}

/// What Android reads of a reply.
#[derive(Debug)]
struct Reply {
    kind: u8,
    xid: u32,
    chaddr: [u8; 6],
    yiaddr: Ipv4Addr,
    server_id: Option<Ipv4Addr>,
    mask: Option<Ipv4Addr>,
    routers: Vec<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    lease: Option<u32>,
    captive_portal: Option<String>,
}

/// Parses a reply as `DhcpPacket.decodeFullPacket` does (cookie required, option
/// lengths checked); `None` for what Android would throw away.
fn parse(p: &[u8]) -> Option<Reply> {
    if p.len() < 240 || p[0] != 2 || p[236..240] != [0x63, 0x82, 0x53, 0x63] {
        return None;
    }
    let ip = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    let mut r = Reply {
        kind: 0,
        xid: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        chaddr: [0; 6],
        yiaddr: ip(16),
        server_id: None,
        mask: None,
        routers: Vec::new(),
        dns: Vec::new(),
        lease: None,
        captive_portal: None,
    };
    r.chaddr.copy_from_slice(&p[28..34]);
    let mut i = 240;
    while i < p.len() {
        let code = p[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(*p.get(i + 1)?);
        let v = p.get(i + 2..i + 2 + len)?;
        let ips = || {
            v.chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect()
        };
        match (code, len) {
            (53, 1) => r.kind = v[0],
            (54, 4) => r.server_id = Some(ip(i + 2)),
            (1, 4) => r.mask = Some(ip(i + 2)),
            (3, n) if n % 4 == 0 => r.routers = ips(),
            (6, n) if n % 4 == 0 => r.dns = ips(),
            (51, 4) => r.lease = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            (114, _) => r.captive_portal = Some(String::from_utf8_lossy(v).to_string()),
            (53 | 54 | 1 | 51, _) => return None, // a length Android refuses
            _ => {}
        }
        i += 2 + len;
    }
    Some(r)
}

fn client_socket(iface: &str) -> UdpSocket {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    setsockopt(&fd, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
    setsockopt(&fd, sockopt::Broadcast, &true).expect("SO_BROADCAST");
    setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(iface))
        .expect("SO_BINDTODEVICE");
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(0, 0, 0, 0, 68),
    )
    .expect("bind :68");
    let s = UdpSocket::from(fd);
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    s
}

const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));

fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("a MAC");
    }
    mac
}

/// One exchange as an Android tablet; the ACK as JSON.
fn android(iface: &str, mac: [u8; 6], hostname: &str) -> Result<String, String> {
    let s = client_socket(iface);
    let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ 0x5a5a_0001;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1500];
    let mut offer: Option<Reply> = None;
    let mut sent = Instant::now() - Duration::from_secs(10);
    let mut discovers = 0;
    while Instant::now() < deadline {
        if sent.elapsed() > Duration::from_secs(1) {
            // DO_UNICAST: the broadcast flag is not set.
            let ask = Ask::discover(xid, mac, false, hostname);
            let msg = match &offer {
                None => {
                    discovers += 1;
                    android_message(&Ask {
                        rapid_commit: discovers <= 3,
                        ..ask
                    })
                }
                Some(o) => android_message(&ask.request(o.yiaddr, o.server_id)),
            };
            s.send_to(&msg, SERVER).map_err(|e| e.to_string())?;
            sent = Instant::now();
        }
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        let Some(r) = parse(&buf[..n]) else { continue };
        // DhcpClient.isValidPacket: the transaction and the hardware address.
        if r.xid != xid || r.chaddr != mac {
            continue;
        }
        match (r.kind, &offer) {
            (OFFER, None) if r.server_id.is_some() && r.yiaddr != Ipv4Addr::UNSPECIFIED => {
                offer = Some(r);
                sent = Instant::now() - Duration::from_secs(10);
            }
            (ACK, Some(o)) => {
                let mask = r.mask.ok_or("no subnet mask")?;
                let bits = u32::from(mask);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return Err(format!("a non-contiguous mask {mask}"));
                }
                return Ok(serde_json::json!({
                    "address": r.yiaddr.to_string(),
                    "prefix": bits.leading_ones(),
                    "router": r.routers.first().map(|a| a.to_string()),
                    "dns": r.dns.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "lease": r.lease,
                    "server_id": r.server_id.map(|a| a.to_string()),
                    "offer_server_id": o.server_id.map(|a| a.to_string()),
                    "captive_portal": r.captive_portal,
                    "from": from.to_string(),
                })
                .to_string());
            }
            (NAK, _) => return Err("NAK".into()),
            _ => {}
        }
    }
    Err("no lease in 10 s".into())
}

struct Pending {
    mac: [u8; 6],
    started: Instant,
    sent: Instant,
    offer: Option<(Ipv4Addr, Option<Ipv4Addr>)>,
}

/// `clients` exchanges, `window` at a time.
fn load(iface: &str, clients: u32, window: usize, tag: u8) -> String {
    let s = client_socket(iface);
    let mut buf = [0u8; 1500];
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let (mut next, mut done) = (0u32, 0u32);
    let start = Instant::now();
    let mut last_latency = Duration::ZERO;
    let (mut resent, mut naks) = (0u64, 0u64);
    let send = |p: &Pending, xid: u32| {
        let ask = Ask::discover(xid, p.mac, true, "");
        let msg = match p.offer {
            None => android_message(&ask),
            Some((a, srv)) => android_message(&ask.request(a, srv)),
        };
        let _ = s.send_to(&msg, SERVER);
    };
    while done < clients && start.elapsed() < Duration::from_secs(600) {
        while pending.len() < window && next < clients {
            let xid = 0x1000_0000 + next;
            let n = next.to_be_bytes();
            let p = Pending {
                mac: [0x02, tag, n[0], n[1], n[2], n[3]],
                started: Instant::now(),
                sent: Instant::now(),
                offer: None,
            };
            send(&p, xid);
            pending.insert(xid, p);
            next += 1;
        }
        match s.recv_from(&mut buf) {
            Ok((n, _)) => {
                let Some(r) = parse(&buf[..n]) else { continue };
                let Some(p) = pending.get_mut(&r.xid) else {
                    continue;
                };
                if r.chaddr != p.mac {
                    continue;
                }
                match r.kind {
                    OFFER if p.offer.is_none() => {
                        p.offer = Some((r.yiaddr, r.server_id));
                        p.sent = Instant::now();
                        send(p, r.xid);
                    }
                    ACK if p.offer.is_some() => {
                        last_latency = p.started.elapsed();
                        pending.remove(&r.xid);
                        done += 1;
                    }
                    // As Android's DhcpRequestingState: back to INIT, a new DISCOVER.
                    NAK if p.offer.is_some() => {
                        naks += 1;
                        p.offer = None;
                        p.sent = Instant::now();
                        send(p, r.xid);
                    }
                    _ => {}
                }
            }
            Err(_) => {
                for (xid, p) in pending.iter_mut() {
                    if p.sent.elapsed() > Duration::from_secs(1) {
                        p.sent = Instant::now();
                        resent += 1;
                        send(p, *xid);
                    }
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    format!(
        "leases={done} secs={secs:.3} per_sec={:.0} last_latency_ms={:.2} resent={resent} naks={naks}",
        f64::from(done) / secs,
        last_latency.as_secs_f64() * 1000.0
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("android") if args.len() == 5 => {
            match android(&args[2], parse_mac(&args[3]), &args[4]) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    eprintln!("dhcp-client: {e}");
                    std::process::exit(1);
                }
            }
        }
        Some("load") if args.len() == 5 || args.len() == 6 => {
            let clients: u32 = args[3].parse().expect("CLIENTS");
            let window: usize = args[4].parse().expect("WINDOW");
            let tag = args
                .get(5)
                .map_or(0xcc, |t| u8::from_str_radix(t, 16).expect("TAG"));
            println!("{}", load(&args[2], clients, window, tag));
        }
        _ => {
            eprintln!(
                "usage: dhcp-client android IFACE MAC HOSTNAME | load IFACE CLIENTS WINDOW [TAG]"
            );
            std::process::exit(2);
        }
    }
}
