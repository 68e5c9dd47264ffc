//! An upstream resolver that can go silent: a UDP relay on loopback that passes
//! queries to a real resolver (dnsmasq) and its answers back, until `cut` is called;
//! from then on every datagram vanishes, as on a rural link that is "up" but drops
//! everything past the school's router.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct BlackHole {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl BlackHole {
    /// Relays to `resolver` until cut.
    pub fn start(resolver: SocketAddr) -> BlackHole {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the relay");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let (cut, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (cut2, stop2) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            let upstream = UdpSocket::bind("127.0.0.1:0").expect("bind the relay's client");
            upstream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if cut2.load(Ordering::Relaxed) {
                    continue;
                }
                if upstream.send_to(&buf[..n], resolver).is_ok()
                    && let Ok((m, _)) = upstream.recv_from(&mut buf)
                {
                    let _ = socket.send_to(&buf[..m], from);
                }
            }
        });
        BlackHole { addr, cut, stop }
    }

    /// From now on, nothing comes back.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
