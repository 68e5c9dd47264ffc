//! The cache's HTTP client to origins: one GET per attempt, from a byte offset
//! (`Range: bytes=N-`), over plain TCP or rustls. Names are looked up through the DNS
//! server's upstreams, never through the box's own answers: in redirect mode those
//! point back at the box.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("`{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    #[error("cannot find the address of {0}")]
    Unresolved(String),
    #[error("cannot connect to {host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("HTTPS origins need a TLS configuration: {0}")]
    NoTls(String),
    #[error("HTTP with {host} failed: {message}")]
    Http { host: String, message: String },
    #[error("{host} answered {status}")]
    Status { host: String, status: StatusCode },
    #[error("no byte from the origin for {0:?}")]
    Stalled(Duration),
}

/// How the body answers the offset asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// 206 from the offset asked for.
    Resumed,
    /// 200: the whole object, from byte 0 (an origin that ignores Range).
    Whole,
}

pub struct Response {
    pub start: Start,
    pub body: Incoming,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
}

/// Looks a name up through the box's upstream resolvers, never its own answers (the
/// DNS server's `addresses_upstream`, wired by `app`): in redirect mode the box
/// answers the origins' names with itself.
pub(crate) type Resolver =
    Arc<dyn Fn(String) -> futures_util::future::BoxFuture<'static, Vec<IpAddr>> + Send + Sync>;

/// Opens connections to origins.
pub struct Origins {
    tls: Option<Arc<rustls::ClientConfig>>,
    dns: Option<Resolver>,
    timeout: Duration,
}

impl Origins {
    pub fn new(
        tls: Option<Arc<rustls::ClientConfig>>,
        dns: Option<Resolver>,
        timeout: Duration,
    ) -> Origins {
        Origins { tls, dns, timeout }
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OriginError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found: Vec<SocketAddr> = match &self.dns {
            Some(resolve) => resolve(host.to_string())
                .await
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            None => tokio::net::lookup_host((host, port))
                .await
                .map(|a| a.collect())
                .unwrap_or_default(),
        };
        if found.is_empty() {
            return Err(OriginError::Unresolved(host.to_string()));
        }
        Ok(found)
    }

    /// GETs `url` from byte `from` on; extra headers are sent as given.
    // Long: one HTTP exchange with its checks in order (connect, TLS, status, Range,
    // length), each failure named for the admin.
    pub async fn get(
        &self,
        url: &str,
        from: u64,
        extra: &[(header::HeaderName, String)],
    ) -> Result<Response, OriginError> {
        let uri: Uri = url.parse().map_err(|_| OriginError::BadUrl(url.into()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(OriginError::BadUrl(url.into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| OriginError::BadUrl(url.into()))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs = self.addresses(&host, port).await?;
        let tcp = tokio::time::timeout(self.timeout, connect_any(&addrs))
            .await
            .map_err(|_| OriginError::Stalled(self.timeout))?
            .map_err(|source| OriginError::Connect {
                host: host.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(&host);
        let mut req = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, authority)
            .header(
                header::USER_AGENT,
                concat!("cartable/", env!("CARGO_PKG_VERSION")),
            );
        if from > 0 {
            req = req.header(header::RANGE, format!("bytes={from}-"));
        }
        for (k, v) in extra {
            req = req.header(k, v);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| OriginError::BadUrl(format!("{url}: {e}")))?;
        let timeout = self.timeout;
        let sent_err = |e: Sent| match e {
            Sent::Hyper(e) => OriginError::Http {
                host: host.clone(),
                message: e.to_string(),
            },
            Sent::Timeout => OriginError::Stalled(timeout),
        };
        let response = if https {
            let tls = self
                .tls
                .clone()
                .ok_or_else(|| OriginError::NoTls(url.into()))?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| OriginError::BadUrl(url.into()))?;
            let stream = tokio::time::timeout(
                self.timeout,
                tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
            )
            .await
            .map_err(|_| OriginError::Stalled(self.timeout))?
            .map_err(|source| OriginError::Tls {
                host: host.clone(),
                source,
            })?;
            send(stream, req, self.timeout).await.map_err(sent_err)?
        } else {
            send(tcp, req, self.timeout).await.map_err(sent_err)?
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let start = match status {
            StatusCode::OK => Start::Whole,
            StatusCode::PARTIAL_CONTENT if from > 0 => {
                // Only a range that starts where we stopped can be appended.
                let starts_right = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, _)| a.parse::<u64>().ok())
                    == Some(from);
                if !starts_right {
                    return Err(OriginError::Http {
                        host,
                        message: "a partial answer that does not start where asked".into(),
                    });
                }
                Start::Resumed
            }
            status => return Err(OriginError::Status { host, status }),
        };
        Ok(Response {
            start,
            body: response.into_body(),
            content_type,
            content_length,
        })
    }
}

enum Sent {
    Hyper(hyper::Error),
    Timeout,
}

async fn send<S>(
    stream: S,
    req: Request<Empty<Bytes>>,
    timeout: Duration,
) -> Result<hyper::Response<Incoming>, Sent>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Sent::Hyper)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::time::timeout(timeout, sender.send_request(req))
        .await
        .map_err(|_| Sent::Timeout)?
        .map_err(Sent::Hyper)
}

async fn connect_any(addrs: &[SocketAddr]) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = std::io::Error::other("no address");
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The next chunk of a body, or an error when the origin is silent for `stall`.
pub(crate) async fn next_chunk(
    body: &mut Incoming,
    stall: Duration,
) -> Result<Option<Bytes>, OriginError> {
    loop {
        let frame = tokio::time::timeout(stall, body.frame())
            .await
            .map_err(|_| OriginError::Stalled(stall))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => {
                return Err(OriginError::Http {
                    host: String::new(),
                    message: e.to_string(),
                });
            }
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data()
                    && !data.is_empty()
                {
                    return Ok(Some(data));
                }
            }
        }
    }
}
