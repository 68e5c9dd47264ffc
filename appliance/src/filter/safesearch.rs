//! The search engines' official safe endpoints. Answering an engine's name with a CNAME
//! to its safe endpoint turns safe search on for every browser and app, with nothing
//! to configure on the tablets.
//!
//! Qwant publishes no such endpoint; a policy that must guarantee safe results blocks
//! `qwant.com` and lets pupils use an engine listed here.

use serde::{Deserialize, Serialize};

/// YouTube's restricted modes; strict hides comments, so schools choose per group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum YoutubeMode {
    #[default]
    Off,
    Moderate,
    Strict,
}

/// Which engine a rewrite is for (for counters and explanations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Google,
    Bing,
    DuckDuckGo,
    Ecosia,
    Pixabay,
    Yandex,
    YouTube,
}

/// The safe endpoint `name` must be answered with, if it is an engine's host.
pub fn rewrite(name: &str, search: bool, youtube: YoutubeMode) -> Option<(Engine, &'static str)> {
    if youtube != YoutubeMode::Off && YOUTUBE.contains(&name) {
        let target = match youtube {
            YoutubeMode::Strict => "restrict.youtube.com",
            _ => "restrictmoderate.youtube.com",
        };
        return Some((Engine::YouTube, target));
    }
    if !search {
        return None;
    }
    let bare = name.strip_prefix("www.").unwrap_or(name);
    if let Some(tld) = bare.strip_prefix("google.")
        && GOOGLE_TLDS.binary_search(&tld).is_ok()
    {
        return Some((Engine::Google, "forcesafesearch.google.com"));
    }
    let found = match bare {
        "bing.com" => (Engine::Bing, "strict.bing.com"),
        "duckduckgo.com" | "start.duckduckgo.com" => (Engine::DuckDuckGo, "safe.duckduckgo.com"),
        "ecosia.org" => (Engine::Ecosia, "strict-safe-search.ecosia.org"),
        "pixabay.com" => (Engine::Pixabay, "safesearch.pixabay.com"),
        "yandex.ru" | "yandex.com" | "yandex.fr" => (Engine::Yandex, "familysearch.yandex.ru"),
        _ => return None,
    };
    Some(found)
}

/// The hosts YouTube's restricted mode covers (Google's documentation).
const YOUTUBE: &[&str] = &[
    "www.youtube.com",
    "m.youtube.com",
    "youtubei.googleapis.com",
    "youtube.googleapis.com",
    "www.youtube-nocookie.com",
];

/// Google's search domains (`google.TLD`), sorted for binary search.
const GOOGLE_TLDS: &[&str] = &[
    "ad", "ae", "al", "am", "as", "at", "az", "ba", "be", "bf", "bg", "bi", "bj", "bs", "bt", "by",
    "ca", "cat", "cd", "cf", "cg", "ch", "ci", "cl", "cm", "cn", "co.ao", "co.bw", "co.ck",
    "co.cr", "co.id", "co.il", "co.in", "co.jp", "co.ke", "co.kr", "co.ls", "co.ma", "co.mz",
    "co.nz", "co.th", "co.tz", "co.ug", "co.uk", "co.uz", "co.ve", "co.vi", "co.za", "co.zm",
    "co.zw", "com", "com.af", "com.ag", "com.ar", "com.au", "com.bd", "com.bh", "com.bn", "com.bo",
    "com.br", "com.bz", "com.co", "com.cu", "com.cy", "com.do", "com.ec", "com.eg", "com.et",
    "com.fj", "com.gh", "com.gi", "com.gt", "com.hk", "com.jm", "com.kh", "com.kw", "com.lb",
    "com.ly", "com.mm", "com.mt", "com.mx", "com.my", "com.na", "com.ng", "com.ni", "com.np",
    "com.om", "com.pa", "com.pe", "com.pg", "com.ph", "com.pk", "com.pr", "com.py", "com.qa",
    "com.sa", "com.sb", "com.sg", "com.sl", "com.sv", "com.tj", "com.tr", "com.tw", "com.ua",
    "com.uy", "com.vc", "com.vn", "cv", "cz", "de", "dj", "dk", "dm", "dz", "ee", "es", "fi", "fm",
    "fr", "ga", "ge", "gg", "gl", "gm", "gr", "gy", "hn", "hr", "ht", "hu", "ie", "im", "iq", "is",
    "it", "je", "jo", "kg", "ki", "kz", "la", "li", "lk", "lt", "lu", "lv", "md", "me", "mg", "mk",
    "ml", "mn", "mu", "mv", "mw", "ne", "nl", "no", "nr", "nu", "pl", "pn", "ps", "pt", "ro", "rs",
    "ru", "rw", "sc", "se", "sh", "si", "sk", "sm", "sn", "so", "sr", "st", "td", "tg", "tl", "tm",
    "tn", "to", "tt", "vu", "ws",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_tlds_are_sorted_for_binary_search() {
        assert!(GOOGLE_TLDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn engines_map_to_their_official_endpoints() {
        let on = |n| rewrite(n, true, YoutubeMode::Off).map(|(_, t)| t);
        assert_eq!(on("www.google.fr"), Some("forcesafesearch.google.com"));
        assert_eq!(on("google.com"), Some("forcesafesearch.google.com"));
        assert_eq!(on("www.google.co.uk"), Some("forcesafesearch.google.com"));
        assert_eq!(on("www.bing.com"), Some("strict.bing.com"));
        assert_eq!(on("duckduckgo.com"), Some("safe.duckduckgo.com"));
        assert_eq!(on("www.ecosia.org"), Some("strict-safe-search.ecosia.org"));
        assert_eq!(on("pixabay.com"), Some("safesearch.pixabay.com"));
        assert_eq!(on("mail.google.com"), None);
        assert_eq!(on("www.google.example"), None);
        assert_eq!(on("www.youtube.com"), None, "YouTube is its own switch");
        assert_eq!(rewrite("www.google.fr", false, YoutubeMode::Strict), None);
    }

    #[test]
    fn youtube_modes() {
        let yt = |m| rewrite("m.youtube.com", false, m).map(|(_, t)| t);
        assert_eq!(yt(YoutubeMode::Strict), Some("restrict.youtube.com"));
        assert_eq!(
            yt(YoutubeMode::Moderate),
            Some("restrictmoderate.youtube.com")
        );
        assert_eq!(yt(YoutubeMode::Off), None);
    }
}
