//! A local origin for the cache's tests: serves byte strings over HTTP/1.1 on
//! loopback, honours `Range: bytes=N-`, and misbehaves on demand (drops the connection
//! mid-file, corrupts the body, ignores Range, trickles), counting every request and
//! every byte it sends.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How an object's next answers go wrong.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next answer stops after this many body bytes and closes the connection.
    pub drop_after: Option<u64>,
    /// This many next answers have one byte changed.
    pub corrupt: u32,
    /// Answers 200 with the whole body even to a Range request.
    pub ignore_range: bool,
    /// Sleeps this long after each 64 KiB sent.
    pub trickle: Duration,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub host: String,
    pub range: Option<String>,
    /// Whether the object was there to send (a 404 otherwise).
    pub found: bool,
}

#[derive(Default)]
struct State {
    objects: HashMap<String, (Arc<Vec<u8>>, Faults)>,
    seen: Vec<Seen>,
    bytes_sent: u64,
    /// Body bytes sent, per path.
    sent_by_path: HashMap<String, u64>,
}

pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        Upstream::start_on("127.0.0.1:0")
    }

    pub fn start_on(addr: &str) -> Upstream {
        let listener = TcpListener::bind(addr).expect("the test origin binds");
        let addr = listener.local_addr().expect("bound");
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        Upstream { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn put(&self, path: &str, body: Vec<u8>, faults: Faults) {
        self.state
            .lock()
            .unwrap()
            .objects
            .insert(path.to_string(), (Arc::new(body), faults));
    }

    pub fn set_faults(&self, path: &str, faults: Faults) {
        if let Some(o) = self.state.lock().unwrap().objects.get_mut(path) {
            o.1 = faults;
        }
    }

    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    pub fn bytes_sent(&self) -> u64 {
        self.state.lock().unwrap().bytes_sent
    }

    /// Body bytes sent for each path, and each object's size: what was sent beyond
    /// an object's size was sent twice.
    pub fn sent_by_path(&self) -> Vec<(String, u64, u64)> {
        let st = self.state.lock().unwrap();
        st.sent_by_path
            .iter()
            .map(|(p, n)| {
                (
                    p.clone(),
                    *n,
                    st.objects.get(p).map_or(0, |o| o.0.len() as u64),
                )
            })
            .collect()
    }

    /// Whether `path` is served.
    pub fn has(&self, path: &str) -> bool {
        self.state.lock().unwrap().objects.contains_key(path)
    }

    /// Requests seen so far.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (mut host, mut range) = (String::new(), None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "host" => host = v.trim().to_string(),
                "range" => range = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let found = {
        let mut st = state.lock().unwrap();
        let found = st.objects.get_mut(&path).map(|(body, faults)| {
            let now = faults.clone();
            faults.drop_after = None;
            faults.corrupt = faults.corrupt.saturating_sub(1);
            (body.clone(), now)
        });
        st.seen.push(Seen {
            path: path.clone(),
            host,
            range: range.clone(),
            found: found.is_some(),
        });
        found
    };
    let mut out = conn;
    let Some((body, faults)) = found else {
        out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    };
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| !faults.ignore_range)
        .filter(|n| *n < body.len());
    let (head, start) = match from {
        Some(n) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {n}-{}/{}\r\nContent-Type: application/vnd.android.package-archive\r\nConnection: close\r\n\r\n",
                body.len() - n,
                body.len() - 1,
                body.len()
            ),
            n,
        ),
        None => (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/vnd.android.package-archive\r\nConnection: close\r\n\r\n",
                body.len()
            ),
            0,
        ),
    };
    out.write_all(head.as_bytes())?;
    let mut data = body[start..].to_vec();
    if faults.corrupt > 0 && !data.is_empty() {
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
    }
    let limit = faults
        .drop_after
        .map_or(data.len(), |n| (n as usize).min(data.len()));
    for chunk in data[..limit].chunks(64 * 1024) {
        out.write_all(chunk)?;
        let mut st = state.lock().unwrap();
        st.bytes_sent += chunk.len() as u64;
        *st.sent_by_path.entry(path.clone()).or_default() += chunk.len() as u64;
        drop(st);
        if !faults.trickle.is_zero() {
            std::thread::sleep(faults.trickle);
        }
    }
    out.flush()?;
    // Dropping the socket here cuts a `drop_after` answer short of its length.
    Ok(())
}
