//! The least any DNS server must do per UDP query, for `tests/bench/dns.sh`: take the
//! datagrams in batches (`recvmmsg`), turn each query into an empty answer in place
//! (QR and RA set, NOERROR, the question kept, no record) and send the batch back
//! (`sendmmsg`), the same calls cartable makes. Its queries per second under a CPU
//! budget bound what any server can answer under that budget on the same machine:
//! the rest of the cost of a query is the kernel's.
//!
//!   dns-floor ADDR      (127.0.0.1:5399, say; runs until killed)
#![forbid(unsafe_code)]

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use anyhow::Context;
use nix::sys::socket::{self, MsgFlags, MultiHeaders, SockaddrStorage};

const BATCH: usize = 32;

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .context("usage: dns-floor ADDR")?
        .parse()
        .context("ADDR: an address and port")?;
    let socket = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
    let mut buffers = Box::new([[0u8; 512]; BATCH]);
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, SocketAddr)> = Vec::with_capacity(BATCH);
    loop {
        got.clear();
        {
            let mut slices = buffers.each_mut().map(|b| [IoSliceMut::new(b)]);
            let batch = match socket::recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(batch) => batch,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("recvmmsg"),
            };
            for msg in batch {
                let from = msg.address.as_ref().and_then(cartable::dns::udp::std_addr);
                if let Some(from) = from.filter(|_| msg.bytes >= 12) {
                    got.push((msg.bytes, from));
                }
            }
        }
        for ((len, _), b) in got.iter_mut().zip(buffers.iter_mut()) {
            // Up to the end of the question; a query whose question does not parse is
            // answered with its header alone.
            *len = question_end(&b[..*len]).unwrap_or(12);
            b[2] |= 0x80; // QR: a response
            b[3] = 0x80; // RA, NOERROR
            b[6..12].fill(0); // no answer, authority or additional record
        }
        let replies: Vec<&[u8]> = got
            .iter()
            .zip(buffers.iter())
            .map(|((len, _), b)| &b[..*len])
            .collect();
        let to: Vec<SocketAddr> = got.iter().map(|(_, a)| *a).collect();
        let mut done = 0;
        while done < replies.len() {
            done += cartable_sys::send_batch(socket.as_fd(), &replies[done..], &to[done..])
                .unwrap_or(1)
                .max(1);
        }
    }
}

/// Where the first question of `query` ends.
fn question_end(query: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let label = usize::from(*query.get(at)?);
        at += 1 + label;
        if label == 0 {
            break;
        }
    }
    (at + 4 <= query.len()).then_some(at + 4)
}
