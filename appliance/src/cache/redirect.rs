//! DNS redirect mode, as LanCache does it: the DNS server answers the configured
//! origins' names with the box's address, and their plain-HTTP requests arrive here,
//! recognised by their `Host`. A URL the catalogue names is served from its verified
//! object (fetched once whichever host of the origin it was asked from); any other is
//! fetched from the origin's real address (looked up past the box's own answers),
//! streamed to the tablet while it is written, and kept (unpinned, LRU) under the key
//! `origin name + path`, so the same file is stored once for all the origin's hosts.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use super::objects::Sha256;
use super::serve::{Meta, serve};
use super::{Cache, index, origin};
use crate::config::RedirectOrigin;

/// Host name (lower case) -> origin name.
pub(crate) fn host_map(origins: &[RedirectOrigin]) -> HashMap<String, String> {
    origins
        .iter()
        .flat_map(|o| {
            o.hosts.iter().map(|h| {
                (
                    h.trim_end_matches('.').to_ascii_lowercase(),
                    o.name.to_string(),
                )
            })
        })
        .collect()
}

fn host_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let raw = match uri.host() {
        Some(h) => h,
        None => headers.get(header::HOST)?.to_str().ok()?,
    };
    Some(bare_host(raw))
}

/// A `Host` value without its port or final dot, in lower case (as the redirect
/// table's keys are).
pub(crate) fn bare_host(raw: &str) -> String {
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => raw,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Puts [`middleware`] in front of every route of `router` (the whole box's): a
/// request for a redirected origin never reaches another service.
pub(crate) fn wrap(router: axum::Router, cache: Arc<Cache>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(cache, middleware))
}

/// Runs before every route: requests for a redirected origin are the cache's.
pub(crate) async fn middleware(
    State(cache): State<Arc<Cache>>,
    req: Request,
    next: Next,
) -> Response {
    if cache.redirect_hosts.is_empty() {
        return next.run(req).await;
    }
    let Some(origin) = host_of(req.headers(), req.uri())
        .and_then(|h| cache.redirect_hosts.get(&h).cloned().map(|o| (h, o)))
    else {
        return next.run(req).await;
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "the box caches downloads only (GET)\n",
        )
            .into_response();
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    handle(&cache, &origin.1, &origin.0, &path, req.headers()).await
}

#[tracing::instrument(skip(cache, headers))]
async fn handle(
    cache: &Arc<Cache>,
    origin: &str,
    host: &str,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    let file_name = path
        .split('?')
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    // 1. A URL the catalogue names, on any host of this origin.
    let catalogue = cache.catalogue();
    let named = catalogue.items.iter().find(|i| {
        i.urls.iter().any(|u| {
            u.parse::<Uri>().is_ok_and(|u| {
                u.scheme_str() == Some("http")
                    && u.host().is_some_and(|h| {
                        cache
                            .redirect_hosts
                            .get(&h.to_ascii_lowercase())
                            .map(String::as_str)
                            == Some(origin)
                    })
                    && u.path_and_query().map_or("/", |p| p.as_str()) == path
            })
        })
    });
    if let Some(item) = named
        && let Some(sha) = Sha256::parse(&item.sha256)
    {
        let meta = Meta {
            content_type: Some(super::serve::content_type_of(&file_name).into()),
            file_name: None,
        };
        return serve(cache, &sha, headers, &meta).await;
    }
    // 2. Fetched before, by this key.
    let key = format!("{origin}{path}");
    let k = key.clone();
    if let Ok(Some((sha, content_type))) = cache.store().read(move |c| index::url(c, &k)).await
        && let Some(sha) = Sha256::parse(&sha)
        && cache.objects.contains(&sha)
    {
        let meta = Meta {
            content_type,
            file_name: None,
        };
        return serve(cache, &sha, headers, &meta).await;
    }
    // 3. From the origin, kept on the way.
    pass_through(cache, key, format!("http://{host}{path}")).await
}

/// Sends a chunk to the tablet; one that went away does not stop the download.
async fn forward(
    client: &mut Option<tokio::sync::mpsc::Sender<std::io::Result<hyper::body::Bytes>>>,
    item: std::io::Result<hyper::body::Bytes>,
) {
    if let Some(c) = client
        && c.send(item).await.is_err()
    {
        *client = None;
    }
}

/// Files a whole passed-through download under its URL key.
async fn store_download(
    cache: &Arc<Cache>,
    tmp: std::path::PathBuf,
    key: String,
    content_type: Option<String>,
    reservation: Option<super::Reservation>,
) {
    let c = cache.clone();
    let adopted = tokio::task::spawn_blocking(move || c.objects.adopt(&tmp)).await;
    if let Ok(Ok((sha, size))) = adopted {
        cache.stored(size);
        drop(reservation);
        let result = cache
            .store()
            .write(move |tx| {
                index::insert(tx, &sha, size, super::now_ms(), Some(&key))?;
                index::set_url(tx, &key, &sha, content_type.as_deref())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot index a redirected download");
        }
    }
}

async fn pass_through(cache: &Arc<Cache>, key: String, url: String) -> Response {
    let response = match cache.origins.get(&url, 0, &[]).await {
        Ok(r) => r,
        Err(origin::OriginError::Status { status, .. }) => {
            return (status, "the origin's answer\n").into_response();
        }
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response();
        }
    };
    let length = response.content_length;
    let content_type = response.content_type.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<hyper::body::Bytes>>(16);
    let cache = cache.clone();
    let ct = content_type.clone();
    tokio::spawn(async move {
        // Room first: without it the download is only passed through.
        let reservation = match length {
            Some(n) => cache.make_room(n, true).await.ok(),
            None => None,
        };
        let tmp = cache.objects.temp_path("redirect");
        let mut file = match reservation {
            Some(_) => tokio::fs::File::create(&tmp).await.ok(),
            None => None,
        };
        let stall = std::time::Duration::from_secs(cache.config().stall_secs.max(1));
        let mut body = response.body;
        let mut got = 0u64;
        let mut client = Some(tx);
        // The last chunk read waits for the next, and the final one for the file to be
        // stored: a tablet that has the whole download finds it in the cache when it asks
        // again, instead of a second trip to the origin.
        let mut held: Option<hyper::body::Bytes> = None;
        let complete = loop {
            match origin::next_chunk(&mut body, stall).await {
                Ok(Some(chunk)) => {
                    got += chunk.len() as u64;
                    if let Some(f) = file.as_mut()
                        && f.write_all(&chunk).await.is_err()
                    {
                        file = None;
                    }
                    if let Some(previous) = held.replace(chunk) {
                        forward(&mut client, Ok(previous)).await;
                    }
                }
                Ok(None) => break length.is_none_or(|n| n == got),
                Err(e) => {
                    if let Some(previous) = held.take() {
                        forward(&mut client, Ok(previous)).await;
                    }
                    forward(&mut client, Err(std::io::Error::other(e.to_string()))).await;
                    break false;
                }
            }
        };
        if let Some(file) = file {
            drop(file);
            if complete {
                store_download(&cache, tmp, key, ct, reservation).await;
            } else {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
        }
        if let Some(last) = held {
            forward(&mut client, Ok(last)).await;
        }
    });
    let mut r = Response::builder().status(StatusCode::OK);
    if let Some(n) = length {
        r = r.header(header::CONTENT_LENGTH, n);
    }
    if let Some(ct) = content_type {
        r = r.header(header::CONTENT_TYPE, ct);
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    r.body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}
