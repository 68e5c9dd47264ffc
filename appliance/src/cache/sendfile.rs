//! The cache's fast path: `GET` and `HEAD` of an object the box holds, answered on
//! the raw connection with `sendfile(2)`, so the bytes go from the page cache to the
//! socket without passing through user space (as nginx does). Hyper would copy each
//! byte twice more, which halves what a 2-core box can serve to a class at once.
//!
//! Only the simple, hot case is taken here: a request head that names a held object
//! by hash or by catalogue item, without a body, not for a redirected origin. Anything
//! else (and any request that follows on the same connection and is not such) is
//! handed to hyper with the bytes read so far, so behaviour is the router's.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use super::Cache;
use super::objects::Sha256;
use super::serve::{Meta, content_type_of, etag_matches, plan_range};
use crate::base::http::{After, FastPath};

/// The fast path as the web server takes it.
pub(crate) struct Sendfile(pub Arc<Cache>);

impl FastPath for Sendfile {
    fn serve<'a>(
        &'a self,
        stream: &'a mut TcpStream,
        buf: &'a mut Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = After> + Send + 'a>> {
        Box::pin(serve(stream, buf, &self.0))
    }
}

const MAX_HEAD: usize = 16 * 1024;
/// A kept-alive connection with no new request for this long is closed.
const IDLE: Duration = Duration::from_secs(60);

/// Serves consecutive requests for held objects on `stream`; returns when the
/// connection ends or a request is not one (left whole at the start of `buf`).
pub(crate) async fn serve(stream: &mut TcpStream, buf: &mut Vec<u8>, cache: &Arc<Cache>) -> After {
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !maybe_cache_request(buf) || buf.len() > MAX_HEAD {
                return After::PassOn;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(IDLE, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                    return if buf.is_empty() {
                        After::Closed
                    } else {
                        After::PassOn
                    };
                }
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let Some(req) = Head::parse(&buf[..head_end]) else {
            return After::PassOn;
        };
        if req.has_body
            || req
                .host
                .as_deref()
                .is_some_and(|h| cache.redirect_hosts.contains_key(h))
        {
            return After::PassOn;
        }
        let Some((sha, meta)) = target(cache, &req.path) else {
            return After::PassOn;
        };
        let Ok(file) = std::fs::File::open(cache.objects.path(&sha)) else {
            return After::PassOn;
        };
        let Ok(size) = file.metadata().map(|m| m.len()) else {
            return After::PassOn;
        };
        buf.drain(..head_end);
        cache.touch(&sha);
        let keep = req.keep_alive;
        let result = answer(stream, &file, size, &sha, &meta, &req).await;
        if result.is_err() || !keep {
            let _ = stream.shutdown().await;
            return After::Closed;
        }
    }
}

/// A request head can still turn out to be `GET /cache/...` or `HEAD /cache/...`.
fn maybe_cache_request(buf: &[u8]) -> bool {
    [&b"GET /cache/"[..], &b"HEAD /cache/"[..]]
        .iter()
        .any(|p| p.starts_with(&buf[..buf.len().min(p.len())]) || buf.starts_with(p))
}

struct Head {
    head_only: bool,
    path: String,
    host: Option<String>,
    range: Option<String>,
    if_none_match: Option<String>,
    keep_alive: bool,
    has_body: bool,
}

impl Head {
    fn parse(bytes: &[u8]) -> Option<Head> {
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(bytes), Ok(httparse::Status::Complete(_))) {
            return None;
        }
        let head_only = match req.method? {
            "GET" => false,
            "HEAD" => true,
            _ => return None,
        };
        let http11 = req.version? == 1;
        let mut head = Head {
            head_only,
            path: req.path?.to_string(),
            host: None,
            range: None,
            if_none_match: None,
            keep_alive: http11,
            has_body: false,
        };
        for h in req.headers.iter() {
            let v = std::str::from_utf8(h.value).ok()?.trim();
            match h.name.to_ascii_lowercase().as_str() {
                "host" => head.host = Some(super::redirect::bare_host(v)),
                "range" => head.range = Some(v.to_string()),
                "if-none-match" => head.if_none_match = Some(v.to_string()),
                "connection" => {
                    let v = v.to_ascii_lowercase();
                    if v.contains("close") {
                        head.keep_alive = false;
                    } else if v.contains("keep-alive") {
                        head.keep_alive = true;
                    }
                }
                "content-length" => head.has_body |= v != "0",
                "transfer-encoding" | "upgrade" | "expect" => head.has_body = true,
                _ => {}
            }
        }
        Some(head)
    }
}

/// The held object a path names: `/cache/{sha256}` or `/cache/items/{id}[/{version}]`.
fn target(cache: &Cache, path: &str) -> Option<(Sha256, Meta)> {
    let rest = path.strip_prefix("/cache/")?;
    if rest.contains(['?', '%', '#']) {
        return None;
    }
    let (sha, meta) = match rest.strip_prefix("items/") {
        None => (Sha256::parse(rest)?, Meta::default()),
        Some(item) => {
            let (id, version) = match item.split_once('/') {
                Some((i, v)) => (i, Some(v)),
                None => (item, None),
            };
            let catalogue = cache.catalogue();
            let item = catalogue
                .items
                .iter()
                .find(|i| i.id == id && version.is_none_or(|v| v == i.version))?;
            let name = super::serve::file_name(item);
            (
                Sha256::parse(&item.sha256)?,
                Meta {
                    content_type: Some(content_type_of(&name).to_string()),
                    file_name: Some(name),
                },
            )
        }
    };
    cache.objects.contains(&sha).then_some((sha, meta))
}

async fn answer(
    stream: &mut TcpStream,
    file: &std::fs::File,
    size: u64,
    sha: &Sha256,
    meta: &Meta,
    req: &Head,
) -> std::io::Result<()> {
    let etag = format!("\"{}\"", sha.as_str());
    let connection = if req.keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    if req
        .if_none_match
        .as_deref()
        .is_some_and(|v| etag_matches(v, &etag))
    {
        let head = format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n{connection}\r\n");
        return stream.write_all(head.as_bytes()).await;
    }
    let Some((partial, start, end)) = plan_range(req.range.as_deref(), size) else {
        let head = format!(
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\n{connection}\r\n"
        );
        return stream.write_all(head.as_bytes()).await;
    };
    let status = if partial {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {len}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n{connection}",
        meta.content_type
            .as_deref()
            .unwrap_or("application/octet-stream")
    );
    if status.starts_with("206") {
        head.push_str(&format!("Content-Range: bytes {start}-{end}/{size}\r\n"));
    }
    if let Some(name) = &meta.file_name {
        head.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{name}\"\r\n"
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if req.head_only || len == 0 {
        return Ok(());
    }
    let mut offset = start as nix::libc::off_t;
    let mut left = len;
    while left > 0 {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile(
                stream.as_fd(),
                file,
                Some(&mut offset),
                left.min(1 << 30) as usize,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_heads_for_the_cache_are_taken() {
        assert!(maybe_cache_request(b""));
        assert!(maybe_cache_request(b"GE"));
        assert!(maybe_cache_request(b"GET /cache/ab"));
        assert!(maybe_cache_request(b"HEAD /cache/"));
        assert!(!maybe_cache_request(b"GET /api/v1/status"));
        assert!(!maybe_cache_request(b"POST /cache/"));
        let h = Head::parse(
            b"GET /cache/x HTTP/1.1\r\nHost: box:8080\r\nRange: bytes=1-\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (h.host.as_deref(), h.range.as_deref(), h.keep_alive),
            (Some("box"), Some("bytes=1-"), false)
        );
        let h = Head::parse(b"GET /cache/x HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = Head::parse(b"GET /cache/x HTTP/1.1\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert!(h.has_body);
        assert!(Head::parse(b"GET /cache/x HTTP/1.1\r\nBad Header\r\n\r\n").is_none());
    }
}
