//! Pupils' QR cards: a pupil who cannot read yet signs in on any tablet by showing a
//! card. The card holds no password: `C1-{pupil}-{generation}-{mac}`, the MAC an
//! HMAC-SHA256 (checked in constant time) under a secret that never leaves the box. Revoking a card bumps the
//! pupil's generation, so every printed copy stops working at once.

use ring::hmac;
use rusqlite::{OptionalExtension, params};

use crate::store::{Store, StoreError};

const PREFIX: &str = "C1";

fn signed(pupil: i64, generation: i64) -> String {
    format!("cartable card v1 {pupil} {generation}")
}

pub struct Cards {
    key: hmac::Key,
}

/// A pupil a valid card names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardHolder {
    pub pupil_id: i64,
    pub name: String,
    pub class: String,
}

impl Cards {
    /// Loads the box's card secret (made by a migration when the store was created).
    pub fn load(store: &Store) -> Result<Cards, StoreError> {
        let secret: String = store.read_blocking(|c| {
            Ok(c.query_row(
                "SELECT value FROM meta WHERE key = 'card_secret'",
                [],
                |r| r.get(0),
            )?)
        })?;
        Ok(Cards {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        })
    }

    fn mac(&self, pupil: i64, generation: i64) -> String {
        let tag = hmac::sign(&self.key, signed(pupil, generation).as_bytes());
        cartable_protocol::desired::hex(tag.as_ref())
    }

    pub fn token(&self, pupil: i64, generation: i64) -> String {
        format!(
            "{PREFIX}-{pupil}-{generation}-{}",
            self.mac(pupil, generation)
        )
    }

    /// The pupil a card names, if it is genuine and not revoked.
    pub async fn verify(
        &self,
        store: &Store,
        card: &str,
    ) -> Result<Option<CardHolder>, StoreError> {
        let Some((pupil, generation, mac)) = parse(card.trim()) else {
            return Ok(None);
        };
        let Some(mac) = cartable_protocol::desired::unhex(mac) else {
            return Ok(None);
        };
        if hmac::verify(&self.key, signed(pupil, generation).as_bytes(), &mac).is_err() {
            return Ok(None);
        }
        store
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT p.first_name || ' ' || p.last_name, c.name FROM pupils p
                     JOIN classes c ON c.id = p.class_id
                     WHERE p.id = ?1 AND p.card_generation = ?2",
                    params![pupil, generation],
                    |r| {
                        Ok(CardHolder {
                            pupil_id: pupil,
                            name: r.get(0)?,
                            class: r.get(1)?,
                        })
                    },
                )
                .optional()?)
            })
            .await
    }
}

/// A card's pupil, generation and MAC, only in the one form [`Cards::token`] prints:
/// numbers in plain decimal (no sign, no leading zero), so a card has one spelling.
fn parse(card: &str) -> Option<(i64, i64, &str)> {
    let parts: Vec<&str> = card.split('-').collect();
    let [PREFIX, pupil, generation, mac] = parts.as_slice() else {
        return None;
    };
    let number = |s: &str| -> Option<i64> {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        canonical.then(|| s.parse().ok()).flatten()
    };
    Some((number(pupil)?, number(generation)?, mac))
}

/// The printable page of a class's cards: one card per pupil, with the school, the
/// class, the pupil's name, the QR code, and what to do with it in one sentence (read
/// aloud by the teacher to pupils who cannot read yet).
pub(crate) fn page(
    cards: &Cards,
    school: &str,
    class_name: &str,
    pupils: &[crate::store::school::CardRow],
) -> String {
    let esc = crate::base::http::escape;
    let mut html = format!(
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"><title>Cartes — {1} — {0}</title>\
         <style>body{{font-family:system-ui,sans-serif}}.cards{{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}}\
         .card{{border:1px dashed #888;padding:10px;text-align:center;break-inside:avoid}}.card svg{{width:160px;height:160px}}\
         .name{{font-size:1.3rem;font-weight:bold}}.where,.how{{font-size:.8rem;color:#444}}</style></head><body>\
         <h1>{1} — {0}</h1><p>Découpez les cartes. Chaque élève montre la sienne à la caméra d'une tablette \
         pour se connecter ; à la fin de la séance, ses fichiers sont effacés de la tablette.</p>\
         <div class=\"cards\">",
        esc(class_name),
        esc(school)
    );
    for (id, first, last, generation) in pupils {
        let token = cards.token(*id, *generation);
        html.push_str(&format!(
            "<div class=\"card\" data-pupil=\"{id}\" data-card=\"{}\"><div class=\"where\">{} · {}</div>\
             <div class=\"name\">{} {}</div>{}<div class=\"how\">Montre cette carte à la tablette pour te connecter.</div></div>",
            esc(&token),
            esc(school),
            esc(class_name),
            esc(first),
            esc(last),
            qr_svg(&token)
        ));
    }
    html.push_str("</div></body></html>");
    html
}

/// One card as SVG: the QR code of `token`, black on white.
pub(crate) fn qr_svg(token: &str) -> String {
    match qrcode::QrCode::new(token.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(160, 160)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_card_verifies_until_revoked_and_forgeries_never_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|t| {
                t.execute_batch(
                    "INSERT INTO classes(id, name, level) VALUES (1, 'CP-A', 'CP');
                     INSERT INTO pupils(id, class_id, first_name, last_name) VALUES (7, 1, 'Léa', 'Martin');",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let cards = Cards::load(&store).unwrap();
        let token = cards.token(7, 1);
        let holder = cards.verify(&store, &token).await.unwrap().unwrap();
        assert_eq!(
            (holder.name.as_str(), holder.class.as_str()),
            ("Léa Martin", "CP-A")
        );
        // The same secret after a restart.
        assert_eq!(Cards::load(&store).unwrap().token(7, 1), token);
        for forged in [
            token.replace("C1-7-", "C1-8-"),
            // The last digit changed (whatever it was).
            format!(
                "{}{}",
                &token[..token.len() - 1],
                if token.ends_with('0') { '1' } else { '0' }
            ),
            "C1-7-1-".to_string(),
            "garbage".to_string(),
            // Other spellings of the same numbers: a card has one form.
            token.replace("C1-7-", "C1-07-"),
            token.replace("C1-7-", "C1-+7-"),
            token.replace("C1-7-1-", "C1-7-01-"),
        ] {
            assert_eq!(
                cards.verify(&store, &forged).await.unwrap(),
                None,
                "{forged}"
            );
        }
        store
            .write(|t| Ok(t.execute("UPDATE pupils SET card_generation = 2 WHERE id = 7", [])?))
            .await
            .unwrap();
        assert_eq!(cards.verify(&store, &token).await.unwrap(), None);
        assert!(
            cards
                .verify(&store, &cards.token(7, 2))
                .await
                .unwrap()
                .is_some()
        );
        assert!(qr_svg(&token).contains("<svg"));
    }
}
