//! Documents a teacher shares with the class: stored under an unguessable id (a
//! tablet's browser opening the link carries no token), served back by that link.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{HubState, class_teacher};
use crate::base::http::{HttpError, HttpResult};
use crate::hub::auth;

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

/// Writes the file whole and synced, then renames it into place.
fn store_file(dir: PathBuf, name: &str, body: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(".part");
    std::fs::write(&tmp, body)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// `POST /api/v1/classes/{id}/documents?name=fiche.pdf`: the body is the file;
/// answers the link to share.
pub(super) async fn upload(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, true).await?;
    let name = q
        .get("name")
        .and_then(|n| safe_name(n))
        .ok_or(HttpError::bad_request("?name=FILE is required"))?;
    if body.is_empty() || body.len() > MAX_DOCUMENT {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "1 byte to 50 MiB",
        ));
    }
    let id = auth::new_secret()[..32].to_string();
    let dir = state.documents.join(&id);
    let written = tokio::task::spawn_blocking({
        let name = name.clone();
        move || store_file(dir, &name, &body)
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return Err(HttpError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "the document could not be stored",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "url": format!("/documents/{id}/{name}"), "name": name })),
    )
        .into_response())
}

/// `GET /documents/{id}/{name}`: a shared document.
pub(super) async fn download(
    State(state): State<HubState>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let valid_id = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let Some(name) = safe_name(&name).filter(|n| *n == name && valid_id) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let path = state.documents.join(id).join(&name);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(file);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
