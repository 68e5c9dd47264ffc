//! Publishing desired state from the policies page: a form (the pages have no
//! script) where a signed-in admin writes a policy set (TOML like the box's file, or
//! JSON) or a catalogue (JSON) for the fleet, a site or a box. The console checks it as
//! `policy publish` does, signs it with the fleet's working key it was started with
//! (`serve --release-key`; the key never leaves the server) and leaves it retained on
//! the broker; what was published, by whom and when, is kept to be edited again.
//!
//! Only a signed-in admin publishes (the guard has checked the form's CSRF field); a
//! caller on the host without a session reads the page but gets no form: a page
//! on another site cannot have a browser on the host publish.

use std::fmt::Write;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cartable_protocol::desired::Body;
use serde::Deserialize;

use crate::auth::Admin;
use crate::broker::BrokerArgs;
use crate::keys::Signer;
use crate::page::{self, Lang, esc};
use crate::store::{Db, Published};

/// The policies page's state: the store, and what publishing needs.
#[derive(Clone)]
pub struct Publishing {
    pub db: Db,
    /// The working key and its certificate; none: the page says how to publish.
    pub signer: Option<Arc<Signer>>,
    pub broker: BrokerArgs,
}

/// What the form posts.
#[derive(Deserialize, Default, Clone)]
pub struct PublishForm {
    /// `policies` or `catalogue`.
    pub kind: String,
    #[serde(default)]
    pub site: String,
    #[serde(default, rename = "box")]
    pub box_id: String,
    pub source: String,
    /// Checked by the guard.
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub lang: Option<String>,
}

/// The form, pre-filled with `draft` (the last publication, or what was refused),
/// and `error` above it; or why there is none.
pub fn render(
    h: &mut String,
    lang: Lang,
    admin: Option<&Admin>,
    can_sign: bool,
    draft: &PublishForm,
    error: Option<&str>,
) {
    let l = |fr, en| lang.t(fr, en);
    let _ = write!(h, "<h2 id=\"publier\">{}</h2>", l("Publier", "Publish"));
    let Some(admin) = admin else {
        let _ = write!(
            h,
            "<p><a href=\"/login\">{}</a></p>",
            l("Connectez-vous pour publier.", "Sign in to publish.")
        );
        return;
    };
    if !can_sign {
        let _ = write!(
            h,
            "<p>{}</p>",
            esc(l(
                "Cette console n'a pas la clé de travail de la flotte : démarrez `cartable-central serve` avec `--release-key CLÉ` pour publier d'ici.",
                "This console does not hold the fleet's working key: start `cartable-central serve` with `--release-key KEY` to publish from here."
            ))
        );
        return;
    }
    if let Some(e) = error {
        let _ = write!(h, "<p role=\"alert\">{}</p>", esc(e));
    }
    let selected = |k: &str| if draft.kind == k { " selected" } else { "" };
    let _ = write!(
        h,
        "<form method=\"post\" action=\"/policies/publish\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"lang\" value=\"{code}\">\
         <p><label>{kind} <select name=\"kind\">\
         <option value=\"policies\"{sp}>{policies}</option>\
         <option value=\"catalogue\"{sc}>{catalogue}</option></select></label> \
         <label>{site} <input name=\"site\" value=\"{vs}\" placeholder=\"{all}\" pattern=\"[a-z0-9_-]{{1,64}}\"></label> \
         <label>{bx} <input name=\"box\" value=\"{vb}\" pattern=\"[a-z0-9_-]{{1,64}}\"></label></p>\
         <p><label>{doc}<br><textarea name=\"source\" rows=\"16\" cols=\"90\" required spellcheck=\"false\">{src}</textarea></label></p>\
         <p><button type=\"submit\">{go}</button> {who}</p></form>",
        csrf = esc(&admin.csrf),
        code = lang.code(),
        kind = l("Type", "Kind"),
        sp = selected("policies"),
        sc = selected("catalogue"),
        policies = l("Politiques de filtrage", "Filtering policies"),
        catalogue = l("Catalogue d'applications", "App catalogue"),
        site = l(
            "Site (vide : toute la flotte)",
            "Site (empty: the whole fleet)"
        ),
        vs = esc(&draft.site),
        all = l("toute la flotte", "whole fleet"),
        bx = l("Boîtier (avec un site)", "Box (with a site)"),
        vb = esc(&draft.box_id),
        doc = l(
            "Document : politiques en TOML (`[[policy]]`, comme le fichier du boîtier) ou JSON ; catalogue en JSON (`{\"items\": [...]}`)",
            "Document: policies as TOML (`[[policy]]`, as in the box's file) or JSON; catalogue as JSON (`{\"items\": [...]}`)"
        ),
        src = esc(&draft.source),
        go = l("Signer et publier", "Sign and publish"),
        who = esc(&format!(
            "{} {}",
            l("signé par la console pour", "signed by the console for"),
            admin.login
        )),
    );
}

/// The table of what this console published: kind, scope, version, who, when.
pub fn history(h: &mut String, lang: Lang, published: &[Published]) {
    let l = |fr, en| lang.t(fr, en);
    let _ = write!(
        h,
        "<h2>{}</h2>",
        l("Publié depuis la console", "Published from the console")
    );
    page::table(
        h,
        &[
            l("Type", "Kind"),
            l("Portée", "Scope"),
            l("Version", "Version"),
            l("Par", "By"),
            l("Le", "On"),
        ],
        published.iter().map(|p| {
            vec![
                p.kind.clone(),
                p.scope.clone(),
                format!("v{}", p.version),
                p.by.clone(),
                page::date(p.at.div_euclid(86_400)),
            ]
        }),
    );
}

/// What a form asks to publish, checked: its scope and signed body.
fn checked(f: &PublishForm) -> anyhow::Result<(cartable_protocol::topics::Scope, Body)> {
    let given = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let scope = crate::publish::scope(given(&f.site), given(&f.box_id))?;
    let body = match f.kind.as_str() {
        "policies" => Body::Policies(crate::publish::policies_from_text(&f.source)?),
        "catalogue" => Body::Catalogue(crate::publish::catalogue_from_text(&f.source)?),
        other => anyhow::bail!("`{other}` is not a kind: policies or catalogue"),
    };
    Ok((scope, body))
}

/// `POST /policies/publish`: checks, signs, publishes, records, then back to the page
/// (303); a refused document comes back in the form with the reason.
pub async fn publish(
    State(p): State<Publishing>,
    admin: Option<Extension<Admin>>,
    headers: HeaderMap,
    Form(f): Form<PublishForm>,
) -> Response {
    let lang = Lang::of(&headers, f.lang.as_deref());
    let Some(Extension(admin)) = admin else {
        return (StatusCode::FORBIDDEN, "sign in to publish\n").into_response();
    };
    let Some(signer) = p.signer.clone() else {
        return (
            StatusCode::CONFLICT,
            "this console has no working key (serve --release-key)\n",
        )
            .into_response();
    };
    let refused = |status: StatusCode, e: anyhow::Error| {
        let mut h = String::new();
        render(
            &mut h,
            lang,
            Some(&admin),
            true,
            &f,
            Some(&format!("{e:#}")),
        );
        let mut r = page::html(None, page::layout(lang, "policies", &h));
        *r.status_mut() = status;
        r
    };
    let (scope, body) = match checked(&f) {
        Ok(c) => c,
        Err(e) => return refused(StatusCode::BAD_REQUEST, e),
    };
    let label = scope.label();
    let (topic, version) =
        match crate::publish::publish(&signer, &p.broker, scope, body, None).await {
            Ok(done) => done,
            Err(e) => return refused(StatusCode::BAD_GATEWAY, e),
        };
    tracing::info!(
        login = admin.login,
        kind = f.kind,
        scope = label,
        version,
        topic,
        "published from the console"
    );
    let record = Published {
        kind: f.kind.clone(),
        scope: label,
        version: i64::try_from(version).unwrap_or(i64::MAX),
        source: f.source.clone(),
        by: admin.login.clone(),
        at: crate::store::now(),
    };
    if let Err(e) = p.db.put_published(record).await {
        // Published and signed already: the boxes have it; only the page's record is lost.
        tracing::error!(error = format!("{e:#}"), "cannot record a publication");
    }
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/policies#publier")],
    )
        .into_response()
}
