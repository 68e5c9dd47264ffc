//! What every service's HTTP routes share: a JSON body that explains its rejection,
//! an error type handlers return with `?`, the loopback check of the admin API, HTML
//! escaping, and the hook that lets a service answer a connection before the router
//! (the cache's `sendfile` path).

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpStream;

/// A refusal or failure, answered as its status and a one-line plain-text reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn forbidden(message: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError::new(StatusCode::FORBIDDEN, message)
    }

    pub(crate) fn not_found(message: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, message)
    }

    /// A failure of the box itself (its store, a task): logged, and a 503 that says
    /// only that it cannot be done now.
    pub(crate) fn unavailable(what: &str, error: &dyn std::fmt::Display) -> HttpError {
        tracing::error!(error = %error, "{what}");
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store cannot do it now",
        )
    }
}

impl From<(StatusCode, &'static str)> for HttpError {
    fn from((status, message): (StatusCode, &'static str)) -> HttpError {
        HttpError::new(status, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut body = self.message.trim_end_matches('\n').to_string();
        body.push('\n');
        (self.status, body).into_response()
    }
}

/// What a handler returns: a response, or an [`HttpError`] through `?`.
pub(crate) type HttpResult = Result<Response, HttpError>;

/// A JSON body; anything else is a 400 that says what is wrong.
pub(crate) struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(HttpError::bad_request(e.body_text())),
        }
    }
}

/// True for 127.0.0.1 and ::1 (and ::ffff:127.0.0.1).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST)
        }
    }
}

/// Refuses every caller but 127.0.0.1 and ::1: the admin API answers a process on the
/// box, or an admin's SSH tunnel, never the school network.
pub(crate) fn local_only(peer: &SocketAddr) -> Result<(), HttpError> {
    if is_loopback(peer.ip()) {
        Ok(())
    } else {
        Err(HttpError::forbidden(
            "the admin API answers on 127.0.0.1 and ::1 only",
        ))
    }
}

/// An admin whom the hub recognised from the request's session cookie (with the CSRF
/// token for a change, sent from the box's own page): put in the request's extensions
/// by [`admin_gate`], read by every service's admin routes through [`admin_or_local`].
/// The hub owns the sessions; the other services see only this.
#[derive(Debug, Clone)]
pub(crate) struct AdminCaller(pub String);

/// How the hub tells an admin's request: the admin's login, or `None`.
pub(crate) type AdminCheck = std::sync::Arc<
    dyn Fn(
            &axum::http::HeaderMap,
            &axum::http::Method,
        ) -> Pin<Box<dyn Future<Output = Option<String>> + Send>>
        + Send
        + Sync,
>;

/// The layer `app.rs` puts on the admin routes of the services other than the hub's:
/// it marks a signed-in admin's request with an [`AdminCaller`] and refuses nothing
/// itself (the handler decides, with [`admin_or_local`]).
pub(crate) async fn admin_gate(
    axum::extract::State(check): axum::extract::State<AdminCheck>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(login) = check(request.headers(), request.method()).await {
        request.extensions_mut().insert(AdminCaller(login));
    }
    next.run(request).await
}

/// An admin route's caller: a signed-in admin, or a process on the box itself (a
/// script, root at the console, an SSH tunnel). Returns who, for the audit trail.
pub(crate) fn admin_or_local(
    peer: &SocketAddr,
    caller: Option<&AdminCaller>,
) -> Result<String, HttpError> {
    match caller {
        Some(AdminCaller(login)) => Ok(login.clone()),
        None if is_loopback(peer.ip()) => Ok(format!("admin@{}", peer.ip())),
        None => Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "sign in as an admin (or call from the box itself)",
        )),
    }
}

/// Escapes text for HTML element content and quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a [`FastPath`] did with a connection.
pub(crate) enum After {
    /// The connection is finished.
    Closed,
    /// The request at the start of the buffer is for the router.
    PassOn,
}

/// Answers some requests on the raw connection before hyper sees it; what it does not
/// take (and the bytes it read, left in `buf`) goes on to the router.
pub(crate) trait FastPath: Send + Sync + 'static {
    fn serve<'a>(
        &'a self,
        stream: &'a mut TcpStream,
        buf: &'a mut Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = After> + Send + 'a>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>"a"&'b'</script>"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn only_loopback_is_local() {
        assert!(local_only(&"127.0.0.1:1".parse().unwrap()).is_ok());
        assert!(local_only(&"[::1]:1".parse().unwrap()).is_ok());
        assert!(local_only(&"[::ffff:127.0.0.1]:1".parse().unwrap()).is_ok());
        let e = local_only(&"10.0.0.7:1".parse().unwrap()).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(!is_loopback("127.0.0.2".parse().unwrap()));
    }
}
