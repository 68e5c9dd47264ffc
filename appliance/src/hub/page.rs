//! The teacher's page and the school admin's pages, embedded in the binary: HTML, CSS and script, no external
//! asset (the box works offline), French and English. A strict Content-Security-
//! Policy keeps anything a pupil could inject from running.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const HTML: &str = include_str!("page/classe.html");
const CSS: &str = include_str!("page/classe.css");
const JS: &str = include_str!("page/classe.js");
const ADMIN_HTML: &str = include_str!("page/admin.html");
const ADMIN_JS: &str = include_str!("page/admin.js");
const ADMIN_CSS: &str = include_str!("page/admin.css");
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", HTML)
}

pub(crate) async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// The school admin's page: to a signed-in admin or the box itself, like the admin
/// API; anyone else is sent to the sign-in page.
pub(crate) async fn admin(
    admin: Result<super::api::Admin, crate::base::http::HttpError>,
) -> Response {
    if admin.is_err() {
        return (
            axum::http::StatusCode::SEE_OTHER,
            [(header::LOCATION, "/classe")],
            "",
        )
            .into_response();
    }
    asset("text/html; charset=utf-8", ADMIN_HTML)
}

pub(crate) async fn admin_script() -> Response {
    asset("text/javascript; charset=utf-8", ADMIN_JS)
}

pub(crate) async fn admin_css() -> Response {
    asset("text/css; charset=utf-8", ADMIN_CSS)
}
