//! `GET /cache/{sha256}`: an object, streamed from disk (never read whole into
//! memory), with `Content-Length`, a strong `ETag` (the hash itself), `If-None-Match`,
//! and single byte ranges (`Range: bytes=a-b`, `a-`, `-n`), so a tablet whose download
//! was cut resumes where it stopped.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use std::sync::Arc;

use super::Cache;
use super::fill::FillState;
use super::objects::Sha256;

/// The byte range asked for, inclusive; `None` when it is malformed or outside the
/// object (a 416). Several ranges are the caller's to answer whole.
pub(crate) fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let last = size.checked_sub(1)?;
    let range = match (a.is_empty(), b.is_empty()) {
        (false, true) => (a.parse::<u64>().ok()?, last),
        (false, false) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?.min(last)),
        (true, false) => {
            let n = b.parse::<u64>().ok().filter(|n| *n > 0)?;
            (size.saturating_sub(n), last)
        }
        (true, true) => return None,
    };
    (range.0 <= range.1 && range.0 < size).then_some(range)
}

/// What a request's `Range` asks of an object of `size` bytes: `(partial, first,
/// last)`, the whole object when there is no range or several (RFC 9110 allows it);
/// `None` when it cannot be satisfied (a 416).
pub(crate) fn plan_range(range: Option<&str>, size: u64) -> Option<(bool, u64, u64)> {
    match range {
        None => Some((false, 0, size.saturating_sub(1))),
        Some(r) if r.contains(',') => Some((false, 0, size.saturating_sub(1))),
        Some(r) => parse_range(r, size).map(|(a, b)| (true, a, b)),
    }
}

/// Whether an `If-None-Match` value names `etag` (or is `*`).
pub(crate) fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .any(|t| t.trim() == etag || t.trim() == "*")
}

pub(crate) async fn object(
    State(cache): State<Arc<Cache>>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(sha) = Sha256::parse(&sha) else {
        return (
            StatusCode::BAD_REQUEST,
            "an object is named by its SHA-256 (64 hex digits)\n",
        )
            .into_response();
    };
    serve(&cache, &sha, &headers, &Meta::default()).await
}

/// `GET /cache/items/{id}` and `/cache/items/{id}/{version}`: a catalogue item by
/// name, with its file name and type, for people and for MDM links.
pub(crate) async fn item(
    State(cache): State<Arc<Cache>>,
    Path(parts): Path<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let get = |k: &str| parts.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(id), version) = (get("id"), get("version")) else {
        return (StatusCode::BAD_REQUEST, "which item?\n").into_response();
    };
    let catalogue = cache.catalogue();
    let Some(item) = catalogue
        .items
        .iter()
        .find(|i| i.id == id && version.is_none_or(|v| v == i.version))
    else {
        return (StatusCode::NOT_FOUND, "no such item in the catalogue\n").into_response();
    };
    let Some(sha) = Sha256::parse(&item.sha256) else {
        return (StatusCode::NOT_FOUND, "no such item in the catalogue\n").into_response();
    };
    let file_name = file_name(item);
    let meta = Meta {
        content_type: Some(content_type_of(&file_name).to_string()),
        file_name: Some(file_name),
    };
    serve(&cache, &sha, &headers, &meta).await
}

/// The name a tablet saves an item under: the last segment of its first URL.
pub(crate) fn file_name(item: &cartable_protocol::desired::CatalogueItem) -> String {
    item.urls
        .first()
        .and_then(|u| u.split(['?', '#']).next())
        .and_then(|u| u.rsplit('/').next())
        .map(|n| {
            n.chars()
                .filter(|c| c.is_ascii_alphanumeric() || "._-+".contains(*c))
                .collect::<String>()
        })
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| format!("{}-{}", item.id, item.version))
}

/// How an object is presented.
#[derive(Debug, Default, Clone)]
pub(crate) struct Meta {
    pub content_type: Option<String>,
    pub file_name: Option<String>,
}

/// The type a tablet needs to install or open a file, from its name.
pub(crate) fn content_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("apk") => "application/vnd.android.package-archive",
        Some("zip") => "application/zip",
        Some("pdf") => "application/pdf",
        Some("json") => "application/json",
        Some("mp4") => "video/mp4",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("epub") => "application/epub+zip",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Serves the object `sha`: from disk when held, else (when the catalogue names it)
/// from its download as the bytes arrive.
// Long: the two ways an object is served (held, or streamed from its download) share
// one range plan, ETag and header set, built here once.
pub(crate) async fn serve(
    cache: &Arc<Cache>,
    sha: &Sha256,
    headers: &HeaderMap,
    meta: &Meta,
) -> Response {
    let etag = format!("\"{}\"", sha.as_str());
    let held = cache.objects.contains(sha);
    let item = if held { None } else { cache.wanted(sha) };
    match &item {
        None if !held => return (StatusCode::NOT_FOUND, "not in the cache\n").into_response(),
        // Another box asks outside the windows: it goes to the origin itself, or
        // waits, as its own windows say.
        Some(w) if w.chunk && !cache.in_window() => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "outside the cache's download windows\n",
            )
                .into_response();
        }
        _ => {}
    }
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let (size, body): (u64, Option<tokio::fs::File>) = if held {
        let file = match tokio::fs::File::open(cache.objects.path(sha)).await {
            Ok(f) => f,
            Err(_) => return (StatusCode::NOT_FOUND, "not in the cache\n").into_response(),
        };
        match file.metadata().await {
            Ok(m) => (m.len(), Some(file)),
            Err(_) => return (StatusCode::NOT_FOUND, "not in the cache\n").into_response(),
        }
    } else {
        (item.as_ref().map_or(0, |w| w.item.size), None)
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let Some((partial, start, end)) = plan_range(range, size) else {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{size}"))],
        )
            .into_response();
    };
    let status = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let body = match (body, item) {
        (Some(mut file), _) => {
            if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
                return (StatusCode::INTERNAL_SERVER_ERROR, "seek failed\n").into_response();
            }
            cache.touch(sha);
            Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                file.take(len),
                256 * 1024,
            ))
        }
        (None, Some(w)) => {
            let fill = if w.chunk {
                cache.fill_chunk(&w.item)
            } else {
                cache.fill(&w.item, false)
            };
            // Answer only once the origin answered: a dead origin is a clear 502,
            // not a response cut at byte 0.
            let mut rx = fill.subscribe();
            loop {
                match rx.borrow_and_update().clone() {
                    FillState::Failed(why) if why.starts_with("no room") => {
                        return (
                            StatusCode::INSUFFICIENT_STORAGE,
                            format!("the cache cannot hold the object: {why}\n"),
                        )
                            .into_response();
                    }
                    FillState::Failed(why) => {
                        return (
                            StatusCode::BAD_GATEWAY,
                            format!("the origin could not provide the object: {why}\n"),
                        )
                            .into_response();
                    }
                    FillState::Running(0) => {}
                    _ => break,
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
            if size == 0 {
                Body::empty()
            } else {
                Body::from_stream(fill.reader(cache.objects.path(sha), start, end))
            }
        }
        (None, None) => return (StatusCode::NOT_FOUND, "not in the cache\n").into_response(),
    };
    let content_type = meta
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut r = (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::ETAG, etag),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        body,
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = format!("bytes {start}-{end}/{size}").parse()
    {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    if let Some(name) = &meta.file_name
        && let Ok(v) = format!("attachment; filename=\"{name}\"").parse()
    {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `GET /api/v1/cache`: every catalogue item and where it is: `present`,
/// `downloading` (with `bytes`), `failed` (with `error` and `retry_in_secs`) or
/// `missing`.
pub(crate) async fn items(State(cache): State<Arc<Cache>>) -> Response {
    let failures = cache.failures.lock().map(|f| f.clone()).unwrap_or_default();
    let now = std::time::Instant::now();
    let list: Vec<serde_json::Value> = cache
        .catalogue()
        .items
        .iter()
        .map(|i| {
            let sha = Sha256::parse(&i.sha256);
            let held = sha.as_ref().is_some_and(|s| cache.objects.contains(s));
            let mut v = serde_json::json!({
                "id": i.id, "version": i.version, "size": i.size, "sha256": i.sha256,
                "pinned": i.pinned, "priority": i.priority,
                "path": format!("/cache/items/{}/{}", i.id, i.version),
                "state": "missing",
            });
            let key = i.sha256.to_ascii_lowercase();
            if held {
                v["state"] = "present".into();
            } else if let Some(bytes) = cache.downloading(&key) {
                v["state"] = "downloading".into();
                v["bytes"] = bytes.into();
            } else if let Some(f) = failures.get(&key) {
                v["state"] = "failed".into();
                v["error"] = f.error.clone().into();
                v["retry_in_secs"] = f.retry_at.saturating_duration_since(now).as_secs().into();
            }
            v
        })
        .collect();
    axum::Json(list).into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_like_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 99)));
        for bad in [
            "bytes=100-",
            "bytes=5-2",
            "bytes=-0",
            "bytes=-",
            "items=0-1",
            "bytes=a-b",
        ] {
            assert_eq!(parse_range(bad, 100), None, "{bad}");
        }
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }
}
