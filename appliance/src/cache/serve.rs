//! `GET /cache/{sha256}`: an object, streamed from disk (never read whole into
//! memory), with `Content-Length`, a strong `ETag` (the hash itself), `If-None-Match`,
//! and single byte ranges (`Range: bytes=a-b`, `a-`, `-n`), so a tablet whose download
//! was cut resumes where it stopped.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::objects::Sha256;
use crate::web::WebState;

/// The byte range asked for, inclusive; `None` when it is malformed or outside the
/// object (a 416). Several ranges are the caller's to answer whole.
pub fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
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

pub async fn object(
    State(state): State<WebState>,
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
    let Some(objects) = state.objects.as_ref() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no cache\n").into_response();
    };
    let etag = format!("\"{}\"", sha.as_str());
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut file = match tokio::fs::File::open(objects.path(&sha)).await {
        Ok(f) => f,
        Err(_) => return (StatusCode::NOT_FOUND, "not in the cache\n").into_response(),
    };
    let size = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return (StatusCode::NOT_FOUND, "not in the cache\n").into_response(),
    };
    let whole = (StatusCode::OK, 0, size.saturating_sub(1));
    let (status, start, end) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => whole,
        // Several ranges at once: the whole object is a valid answer (RFC 9110).
        Some(r) if r.contains(',') => whole,
        Some(r) => match parse_range(r, size) {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
            None => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response();
            }
        },
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "seek failed\n").into_response();
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(len)));
    let mut r = (
        status,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
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
    r
}

/// `GET /api/v1/cache`: every catalogue item and whether the box holds it.
pub async fn items(State(state): State<WebState>) -> Response {
    let (Some(objects), Some(catalogue)) = (state.objects.as_ref(), state.catalogue.as_ref())
    else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no cache\n").into_response();
    };
    let list: Vec<serde_json::Value> = catalogue
        .items
        .iter()
        .map(|i| {
            let held = Sha256::parse(&i.sha256).is_some_and(|s| objects.contains(&s));
            serde_json::json!({
                "id": i.id, "version": i.version, "size": i.size, "sha256": i.sha256,
                "pinned": i.pinned, "state": if held { "present" } else { "missing" },
            })
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
