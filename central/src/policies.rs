//! What desired state is in force across the fleet, per kind and scope, as the boxes
//! report it (their retained state): which version each scope's boxes run, and the
//! boxes still on an older one. Then the form that publishes a new version
//! (`policy_form`), and what the console published.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use axum::Extension;

use crate::auth::Admin;
use crate::page::{self, Lang, esc};
use crate::policy_form::{self, PublishForm, Publishing};
use crate::store::BoxRow;

#[derive(Deserialize, Default)]
pub struct PoliciesQuery {
    lang: Option<String>,
}

/// A first policy set to start from, as in the box's own file.
const STARTER: &str = "[[policy]]\nname = \"ecole\"\ndefault = true\nblock = [\"adult\", \"gambling\"]\nsafe_search = true\n";

/// The form starts from the fleet's policies as last published here.
fn draft(published: &[crate::store::Published]) -> PublishForm {
    published
        .iter()
        .find(|d| d.kind == "policies" && d.scope == "fleet")
        .map(|d| PublishForm {
            kind: d.kind.clone(),
            source: d.source.clone(),
            ..PublishForm::default()
        })
        .unwrap_or_else(|| PublishForm {
            kind: "policies".into(),
            source: STARTER.into(),
            ..PublishForm::default()
        })
}

/// (kind, scope) → version → the boxes that run it.
type InForce = BTreeMap<(String, String), BTreeMap<u64, Vec<String>>>;

fn in_force(boxes: &[BoxRow]) -> InForce {
    let mut out = InForce::new();
    for b in boxes {
        let Some(state) = &b.state else { continue };
        for (kind, d) in &state.desired {
            out.entry((kind.clone(), d.scope.clone()))
                .or_default()
                .entry(d.version)
                .or_default()
                .push(format!("{}/{}", b.site, b.r#box));
        }
    }
    out
}

/// `GET /policies`.
pub async fn page(
    State(p): State<Publishing>,
    admin: Option<Extension<Admin>>,
    headers: HeaderMap,
    Query(q): Query<PoliciesQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let l = |fr, en| lang.t(fr, en);
    let (boxes, published) = match tokio::try_join!(p.db.boxes(), p.db.published()) {
        Ok(b) => b,
        Err(e) => return crate::serve::internal(e),
    };
    let none: Vec<String> = boxes
        .iter()
        .filter(|b| {
            b.state
                .as_ref()
                .is_none_or(|s| !s.desired.contains_key("policies"))
        })
        .map(|b| format!("{}/{}", b.site, b.r#box))
        .collect();
    let mut h = String::new();
    let _ = write!(
        h,
        "<p>{}</p>",
        esc(l(
            "Ce que les boîtiers appliquent, tel qu'ils le disent. On publie ci-dessous, ou avec `cartable-central policy publish FICHIER --key CLÉ [--site S [--box B]]` (ou `catalogue publish`) : la clé de travail signe, les boîtiers vérifient.",
            "What the boxes apply, as they report it. Publish below, or with `cartable-central policy publish FILE --key KEY [--site S [--box B]]` (or `catalogue publish`): the working key signs, the boxes verify."
        ))
    );
    let rows: Vec<Vec<String>> = in_force(&boxes)
        .into_iter()
        .map(|((kind, scope), versions)| {
            let latest = versions.keys().max().copied().unwrap_or(0);
            let on_latest = versions.get(&latest).map_or(0, Vec::len);
            let behind: Vec<String> = versions
                .iter()
                .filter(|(v, _)| **v != latest)
                .flat_map(|(v, b)| b.iter().map(move |name| format!("{name} (v{v})")))
                .collect();
            vec![
                kind,
                scope,
                format!("v{latest}"),
                on_latest.to_string(),
                if behind.is_empty() {
                    "—".into()
                } else {
                    behind.join(", ")
                },
            ]
        })
        .collect();
    page::table(
        &mut h,
        &[
            l("Type", "Kind"),
            l("Portée", "Scope"),
            l("Dernière version", "Latest version"),
            l("Boîtiers à jour", "Boxes on it"),
            l("Boîtiers en retard", "Boxes behind"),
        ],
        rows.into_iter(),
    );
    let _ = write!(
        h,
        "<h2>{}</h2>",
        l(
            "Boîtiers sans politique du central (fichier de configuration ou page d'administration)",
            "Boxes without central policies (configuration file or admin page)"
        )
    );
    page::table(
        &mut h,
        &[l("Boîtier", "Box")],
        none.into_iter().map(|n| vec![n]),
    );
    let draft = draft(&published);
    let admin = admin.map(|Extension(a)| a);
    policy_form::render(
        &mut h,
        lang,
        admin.as_ref(),
        p.signer.is_some(),
        &draft,
        None,
    );
    policy_form::history(&mut h, lang, &published);
    page::html(q.lang.as_deref(), page::layout(lang, "policies", &h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartable_protocol::events::{AppliedDesired, ReportedState};

    #[test]
    fn versions_are_grouped_per_kind_and_scope() {
        let row = |b: &str, v: u64| BoxRow {
            site: "s".into(),
            r#box: b.into(),
            online: true,
            version: String::new(),
            last_seen: 0,
            state: Some(ReportedState {
                desired: [(
                    "policies".to_string(),
                    AppliedDesired {
                        version: v,
                        scope: "fleet".into(),
                        applied_at: 0,
                    },
                )]
                .into(),
                ..ReportedState::default()
            }),
            events: 0,
            key: None,
            held: 0,
        };
        let f = in_force(&[row("a", 3), row("b", 3), row("c", 2)]);
        let v = &f[&("policies".to_string(), "fleet".to_string())];
        assert_eq!(v[&3], ["s/a", "s/b"]);
        assert_eq!(v[&2], ["s/c"]);
    }
}
