//! Domain names as the filter sees them: lower-case ASCII, no trailing dot, valid
//! label lengths. Everything that enters an index or a lookup goes through `normalize`.

/// Longest name in presentation form without the trailing dot (RFC 1035: 255 octets
/// on the wire).
pub const MAX_NAME: usize = 253;

/// Lower-cases and checks `raw`; `None` when it is not a usable domain name.
///
/// Accepts `_` (service labels, and some list entries use it) and a trailing dot;
/// refuses empty labels, labels over 63 bytes, and anything outside `[a-z0-9_-]`.
/// Internationalized names must already be in their `xn--` form, as on the wire.
pub fn normalize(raw: &str) -> Option<String> {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.extend(label.chars().map(|c| c.to_ascii_lowercase()));
    }
    Some(out)
}

/// A byte of a label received on the wire as the name's text holds it: itself, or `?`
/// for a byte that is not printable or is a dot (such a name is not valid; `?` keeps it
/// printable and its labels apart). The DNS server reads names with it, and the lists'
/// index hashes wire names with it to announce its lookups: the two must agree.
pub fn text_byte(c: u8) -> u8 {
    if c.is_ascii_graphic() && c != b'.' {
        c
    } else {
        b'?'
    }
}

/// `name` and each of its parent domains, longest first: `a.b.c`, `b.c`, `c`.
pub fn suffixes(name: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(name);
    std::iter::from_fn(move || {
        let current = rest?;
        rest = current.split_once('.').map(|(_, tail)| tail);
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_trailing_dot() {
        assert_eq!(
            normalize("WWW.Example.COM.").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(
            normalize("_dmarc.example.fr").as_deref(),
            Some("_dmarc.example.fr")
        );
        assert_eq!(
            normalize("xn--caf-dma.fr").as_deref(),
            Some("xn--caf-dma.fr")
        );
    }

    #[test]
    fn refuses_what_is_not_a_name() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a b.com",
            "exa*mple.com",
            "http://x.com",
            "café.fr",
            &long_label,
            &long_name,
            "a/b",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn suffixes_go_from_the_name_to_its_top_level_domain() {
        let all: Vec<&str> = suffixes("a.b.c").collect();
        assert_eq!(all, ["a.b.c", "b.c", "c"]);
    }
}
