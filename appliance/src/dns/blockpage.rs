//! The block page: in `blockpage` mode a blocked name resolves to the box, so the
//! browser's request for it arrives here with the blocked name as its `Host`. The page
//! says, in French and English, what was blocked, under which policy, and why.
//!
//! Everything from the request (the host) is escaped before it enters the page.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::base::http::escape;
use crate::filter::decide::{Action, Reason};
use crate::filter::name::normalize;

/// Not blocked: the root of the box itself (its address, or a name it answers
/// itself) leads to the teachers' sign-in page, a newcomer's first address; anything
/// else is a plain 404.
fn not_blocked(uri: &axum::http::Uri, the_box: bool) -> Response {
    if the_box && uri.path() == "/" {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/classe")], "").into_response();
    }
    (StatusCode::NOT_FOUND, "Cartable\n").into_response()
}

/// The request's `Host`, without its port.
fn host_of(headers: &HeaderMap) -> &str {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':').map_or(h, |(name, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    name
                } else {
                    h
                }
            })
        })
        .unwrap_or("")
}

/// Answers any request whose route is not the box's own: the block page when its host
/// is blocked for this client.
pub(crate) async fn page(
    State(state): State<HttpState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let host = host_of(&headers);
    let engine = &state.engine;
    let the_box = host.is_empty()
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
        || state.engine.is_local_name(host);
    let Some(name) = normalize(host) else {
        return not_blocked(&uri, the_box);
    };
    let filter = engine.filter();
    let now = state.clock.local();
    let mac = engine.mac_of(client.ip());
    let verdict = filter.decide_for(
        &name,
        client.ip(),
        mac.as_ref(),
        now,
        None,
        &mut crate::filter::decide::Listing::Unknown,
    );
    if !matches!(verdict.action, Action::Block(_) | Action::Refuse) {
        return not_blocked(&uri, the_box);
    }
    let policy = &filter.policies.get(verdict.policy).name;
    let (why_fr, why_en) = match verdict.reason {
        Reason::Listed { category, .. } => {
            let c = &filter.index.categories()[usize::from(category)];
            let fr = c
                .titles
                .get("fr")
                .cloned()
                .unwrap_or_else(|| c.name.clone());
            let en = c
                .titles
                .get("en")
                .cloned()
                .unwrap_or_else(|| c.name.clone());
            (
                format!("il figure dans la catégorie « {} »", escape(&fr)),
                format!("it is listed in the category “{}”", escape(&en)),
            )
        }
        Reason::Denied { .. } => (
            "l'établissement l'a ajouté à sa liste de sites interdits".to_string(),
            "the school added it to its list of forbidden sites".to_string(),
        ),
        Reason::NotOnAllowList => (
            "seuls les sites choisis par l'enseignant sont ouverts pour le moment".to_string(),
            "only the sites the teacher chose are open right now".to_string(),
        ),
        Reason::InternetOff => (
            "l'enseignant a coupé l'accès à Internet de cette tablette".to_string(),
            "the teacher turned this tablet's internet access off".to_string(),
        ),
        _ => ("il est bloqué".to_string(), "it is blocked".to_string()),
    };
    let host = escape(&name);
    let policy = escape(policy);
    let body = format!(
        r#"<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Site bloqué — Site blocked</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; color: #222; }}
h1 {{ color: #b3261e; font-size: 1.6rem; }} .host {{ font-family: monospace; font-size: 1.2rem; }}
section + section {{ border-top: 1px solid #ddd; margin-top: 2rem; padding-top: 1rem; }}
small {{ color: #666; }}
</style></head><body>
<section lang="fr"><h1>Ce site est bloqué</h1>
<p class="host">{host}</p>
<p>L'accès à ce site n'est pas autorisé ici, car {why_fr}.</p>
<p>Si tu penses que c'est une erreur, parles-en à ton enseignant.</p></section>
<section lang="en"><h1>This site is blocked</h1>
<p>Access to this site is not allowed here, because {why_en}.</p>
<p>If you think this is a mistake, tell your teacher.</p></section>
<p><small>Cartable — politique / policy « {policy} »</small></p>
</body></html>
"#
    );
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
