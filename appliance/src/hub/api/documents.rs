//! Documents a teacher shares with the class: stored under an unguessable id (a
//! tablet's browser opening the link carries no token), served back by that link.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{HubState, class_teacher};
use crate::base::http::{HttpError, HttpResult};
use crate::hub::auth;
use crate::store::school;

/// Largest document a teacher can share.
pub(super) const MAX_DOCUMENT: usize = 50 << 20;

/// A file name safe in a path and a header: letters, digits, `.`, `-`, `_`.
fn safe_name(name: &str) -> Option<String> {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    (!n.is_empty() && !n.starts_with('.')).then_some(n)
}

/// Bytes of documents a class may hold at once; a teacher deletes old ones.
pub(crate) const CLASS_QUOTA: u64 = 200 << 20;
/// A body that sends nothing for this long is cut (a stalled upload must not hold a
/// connection and a file open as long as the client likes).
const BODY_IDLE: Duration = Duration::from_secs(20);

/// Why an upload stopped before it was stored.
enum Cut {
    TooLarge,
    Stalled,
    Broken,
    Disk(std::io::Error),
}

/// Streams `body` into `dir/.part`, at most `limit` bytes, synced; returns its size.
async fn receive(body: Body, dir: &std::path::Path, limit: u64) -> Result<u64, Cut> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    tokio::fs::create_dir_all(dir).await.map_err(Cut::Disk)?;
    let mut file = tokio::fs::File::create(dir.join(".part"))
        .await
        .map_err(Cut::Disk)?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    loop {
        let chunk = match tokio::time::timeout(BODY_IDLE, stream.next()).await {
            Err(_) => return Err(Cut::Stalled),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Cut::Broken),
            Ok(Some(Ok(c))) => c,
        };
        size += chunk.len() as u64;
        if size > limit {
            return Err(Cut::TooLarge);
        }
        file.write_all(&chunk).await.map_err(Cut::Disk)?;
    }
    file.sync_all().await.map_err(Cut::Disk)?;
    Ok(size)
}

/// `POST /api/v1/classes/{id}/documents?name=fiche.pdf`: the body is the file;
/// answers the link to share. The session and CSRF token are checked before a byte
/// of the body is read, and the body goes to disk as it comes: an unauthenticated or
/// stalled upload holds no memory.
pub(crate) async fn upload(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, true).await?;
    let name = q
        .get("name")
        .and_then(|n| safe_name(n))
        .ok_or(HttpError::bad_request("?name=FILE is required"))?;
    let too_large = || HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "1 byte to 50 MiB");
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n == 0 || n > MAX_DOCUMENT as u64) {
        return Err(too_large());
    }
    let used = state
        .hub
        .store()
        .read(move |c| school::documents_bytes(c, class))
        .await?;
    let room = CLASS_QUOTA.saturating_sub(used);
    let full = || {
        HttpError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "the class's documents are full (200 MiB): delete old ones first",
        )
    };
    if declared.is_some_and(|n| n > room) {
        return Err(full());
    }
    let id = auth::new_secret()[..32].to_string();
    let dir = state.documents.join(&id);
    let limit = room.min(MAX_DOCUMENT as u64);
    let size = match receive(body, &dir, limit).await {
        Ok(0) => Err(too_large()),
        Ok(n) => Ok(n),
        Err(Cut::TooLarge) if limit < MAX_DOCUMENT as u64 => Err(full()),
        Err(Cut::TooLarge) => Err(too_large()),
        Err(Cut::Stalled) => Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the upload stalled",
        )),
        Err(Cut::Broken) => Err(HttpError::bad_request("the upload was cut")),
        Err(Cut::Disk(e)) => {
            tracing::error!(error = %e, "a document cannot be written");
            Err(HttpError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "the document could not be stored",
            ))
        }
    };
    let size = match size {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
    };
    tokio::fs::rename(dir.join(".part"), dir.join(&name))
        .await
        .map_err(|e| HttpError::unavailable("a document cannot be renamed", &e))?;
    let (row_id, row_name, now) = (id.clone(), name.clone(), state.clock.unix());
    state
        .hub
        .store()
        .write(move |t| school::add_document(t, &row_id, class, &row_name, size, now))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "url": format!("/documents/{id}/{name}"), "name": name, "id": id })),
    )
        .into_response())
}

/// `DELETE /api/v1/classes/{id}/documents/{doc}`: the file and its link are gone.
pub(crate) async fn delete(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path((class, doc)): Path<(i64, String)>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, true).await?;
    if !valid_id(&doc) {
        return Err(HttpError::not_found("no such document"));
    }
    let id = doc.clone();
    let gone = state
        .hub
        .store()
        .write(move |t| school::delete_document(t, class, &id))
        .await?;
    if !gone {
        return Err(HttpError::not_found("no such document in this class"));
    }
    let _ = tokio::fs::remove_dir_all(state.documents.join(&doc)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How a shared file is served: the types a tablet's browser shows safely open in
/// place (sandboxed, never sniffed); any other is a download.
fn presentation(name: &str) -> (&'static str, bool) {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => ("application/pdf", true),
        "png" => ("image/png", true),
        "jpg" | "jpeg" => ("image/jpeg", true),
        "gif" => ("image/gif", true),
        "webp" => ("image/webp", true),
        "txt" => ("text/plain; charset=utf-8", true),
        "mp3" => ("audio/mpeg", true),
        "ogg" => ("audio/ogg", true),
        "mp4" => ("video/mp4", true),
        _ => ("application/octet-stream", false),
    }
}

/// `Content-Disposition` with the name as RFC 6266 says: an ASCII fallback, and the
/// exact name (accents included) as `filename*`.
fn disposition(name: &str, inline: bool) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `GET /documents/{id}/{name}`: a shared document.
pub(crate) async fn download(
    State(state): State<HubState>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let Some(name) = safe_name(&name).filter(|n| *n == name && valid_id(&id)) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let path = state.documents.join(id).join(&name);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(file);
    let (content_type, inline) = presentation(&name);
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_DISPOSITION, disposition(&name, inline)),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            // Whatever the file holds, it runs no script and reaches nothing.
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'".to_string(),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_types_open_in_place_and_names_keep_their_accents() {
        assert_eq!(presentation("fiche.PDF"), ("application/pdf", true));
        assert_eq!(
            presentation("script.html"),
            ("application/octet-stream", false)
        );
        assert_eq!(presentation("noext"), ("application/octet-stream", false));
        assert_eq!(
            disposition("dictée_été.pdf", true),
            "inline; filename=\"dict_e__t_.pdf\"; filename*=UTF-8''dict%C3%A9e_%C3%A9t%C3%A9.pdf"
        );
        assert!(disposition("x.bin", false).starts_with("attachment;"));
    }
}
