//! What the console's pages share: the language (French unless the browser asks for
//! English, or the admin chose it), the layout with its tabs, escaping, dates. Pages
//! are drawn by the server, charts as inline SVG: no script, no external asset, so the
//! console works on an admin's laptop with no internet access.

use std::fmt::Write;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

/// The console's two languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

const LANG_COOKIE: &str = "central_lang";

impl Lang {
    /// `?lang=` when given, else the cookie it set, else the browser's first choice
    /// (`Accept-Language`), else French.
    pub fn of(headers: &HeaderMap, asked: Option<&str>) -> Lang {
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| kv.trim().strip_prefix(LANG_COOKIE)?.strip_prefix('='));
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().get(..2).unwrap_or_default().to_ascii_lowercase());
        match asked.or(cookie).map(str::to_owned).or(accept).as_deref() {
            Some("en") => Lang::En,
            _ => Lang::Fr,
        }
    }

    /// The text in this language.
    pub fn t<'a>(self, fr: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Fr => fr,
            Lang::En => en,
        }
    }

    pub fn code(self) -> &'static str {
        self.t("fr", "en")
    }
}

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// "3 h ago", in the page's language.
pub fn ago(lang: Lang, now: i64, t: i64) -> String {
    if t <= 0 {
        return lang.t("jamais", "never").into();
    }
    let d = (now - t).max(0);
    let (n, fr, en) = match d {
        0..=59 => (d, "s", "s"),
        60..=3599 => (d / 60, "min", "min"),
        3600..=86_399 => (d / 3600, "h", "h"),
        _ => (d / 86_400, "jours", "days"),
    };
    match lang {
        Lang::Fr => format!("il y a {n} {fr}"),
        Lang::En => format!("{n} {en} ago"),
    }
}

/// A day (days since the epoch, UTC) as `YYYY-MM-DD`.
pub fn date(day: i64) -> String {
    jiff::Timestamp::from_second(day.saturating_mul(86_400))
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
        .unwrap_or_default()
}

/// `YYYY-MM-DD` as a day number.
pub fn parse_date(text: &str) -> Option<i64> {
    let d: jiff::civil::Date = text.parse().ok()?;
    let t = d.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(t.as_second().div_euclid(86_400))
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1d;background:#f6f6f4}\
header{display:flex;align-items:center;gap:1rem;padding:.6rem 1.2rem;background:#24435c;color:#fff}\
header h1{font-size:1.2rem;margin:0;flex:1}header a{color:#fff}\
nav{display:flex;flex-wrap:wrap;gap:.2rem;padding:.4rem 1.2rem 0;background:#dfe6ec}\
nav a{padding:.6rem .9rem;border-radius:6px 6px 0 0;color:#1d1d1d;text-decoration:none;min-height:1.6rem}\
nav a[aria-current=page]{background:#f6f6f4;font-weight:600}\
main{padding:1rem 1.2rem}table{border-collapse:collapse;margin-bottom:1.5rem;background:#fff;width:100%}\
td,th{border-bottom:1px solid #e3e3e3;padding:.35rem .6rem;text-align:left;vertical-align:top}\
th{background:#f0f3f6}.on{color:#276738;font-weight:bold}.off{color:#b00;font-weight:bold}\
.alert{color:#8a4b00;background:#fff3df;border-radius:4px;padding:0 .3rem;display:inline-block;margin:.1rem 0}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.6rem;margin-bottom:1rem}\
.card{background:#fff;border:1px solid #ccd;border-radius:8px;padding:.6rem}.card b{font-size:1.5rem;display:block}\
form.filters{display:flex;flex-wrap:wrap;gap:.8rem;align-items:flex-end;margin-bottom:1rem}\
form.filters label{display:flex;flex-direction:column}input,select,button{font-size:1rem;min-height:2.4rem}\
button{padding:.4rem 1rem;background:#24435c;color:#fff;border:0;border-radius:6px}\
svg.chart{width:100%;height:12rem;background:#fff;border:1px solid #ccd;border-radius:8px}\
svg.chart rect{fill:#24435c}svg.chart text{font-size:10px;fill:#555}code{word-break:break-all}";

/// A whole page: the header with the language switch, the tabs, `body`.
pub fn layout(lang: Lang, tab: &str, body: &str) -> String {
    let tabs = [
        ("/", "fleet", lang.t("Flotte", "Fleet")),
        ("/tablets", "tablets", lang.t("Tablettes", "Tablets")),
        ("/usage", "usage", lang.t("Utilisation", "Usage")),
        ("/policies", "policies", lang.t("Politiques", "Policies")),
    ];
    let mut h = format!(
        "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Cartable — {title}</title><style>{CSS}</style></head><body>\
<header><h1>Cartable — {title}</h1><a href=\"?lang={other}\">{other_name}</a></header><nav>",
        code = lang.code(),
        title = lang.t("console de la flotte", "fleet console"),
        other = lang.t("en", "fr"),
        other_name = lang.t("English", "Français"),
    );
    for (href, id, name) in tabs {
        let current = if id == tab {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(h, "<a href=\"{href}\"{current}>{name}</a>");
    }
    h.push_str("</nav><main>");
    h.push_str(body);
    h.push_str("</main></body></html>");
    h
}

/// An HTML page, with the language cookie set when `?lang=` chose it.
pub fn html(lang_asked: Option<&str>, body: String) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        body,
    )
        .into_response();
    if let Some(l) = lang_asked.filter(|l| *l == "fr" || *l == "en")
        && let Ok(v) =
            format!("{LANG_COOKIE}={l}; Path=/; SameSite=Strict; Max-Age=31536000").parse()
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A table: its head, then rows of escaped cells; "—" when there is no row.
pub fn table(h: &mut String, heads: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    h.push_str("<table><tr>");
    for t in heads {
        let _ = write!(h, "<th>{}</th>", esc(t));
    }
    h.push_str("</tr>");
    let mut any = false;
    for r in rows {
        any = true;
        h.push_str("<tr>");
        for c in r {
            let _ = write!(h, "<td>{}</td>", esc(&c));
        }
        h.push_str("</tr>");
    }
    if !any {
        let _ = write!(h, "<tr><td colspan=\"{}\">—</td></tr>", heads.len());
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_unless_english_is_asked_for_and_dates_round_trip() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h, None), Lang::Fr);
        h.insert(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.8".parse().unwrap());
        assert_eq!(Lang::of(&h, None), Lang::En);
        assert_eq!(Lang::of(&h, Some("fr")), Lang::Fr);
        h.insert(header::COOKIE, "x=1; central_lang=fr".parse().unwrap());
        assert_eq!(Lang::of(&h, None), Lang::Fr);
        assert_eq!(
            parse_date("2026-12-03").map(date).as_deref(),
            Some("2026-12-03")
        );
        assert_eq!(parse_date("2026-13-03"), None);
    }
}
