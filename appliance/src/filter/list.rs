//! Reading block lists: UT1 `domains` files, hosts files, and plain domain lists.
//!
//! One parser serves all three, line by line: `#` starts a comment; a line is either a
//! name, an IPv4 address (UT1 lists sites reached by address), or a hosts-file line
//! (`0.0.0.0 name [name...]`). Lines that are none of these are skipped and counted,
//! with the first few kept so an admin can see what was wrong.

use std::net::Ipv4Addr;

use super::name::normalize;

/// How many bad lines of a file are kept as examples.
pub const EXAMPLES: usize = 5;

/// What one line of a list holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Empty, or only a comment.
    Blank,
    Names(Vec<String>),
    Address(Ipv4Addr),
    /// Not a valid entry.
    Bad,
}

/// Parses one line (without its newline). Invalid UTF-8 is a bad line.
pub fn parse_line(raw: &[u8]) -> Line {
    let Ok(line) = std::str::from_utf8(raw) else {
        return Line::Bad;
    };
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Line::Blank;
    }
    let mut fields = line.split_whitespace();
    let first = fields.next().unwrap_or("");
    let rest: Vec<&str> = fields.collect();
    let is_v4 = first.parse::<Ipv4Addr>();
    if rest.is_empty() {
        // squidGuard's `.example.com`: the domain and its subdomains, as every entry is.
        let bare = first.strip_prefix('.').unwrap_or(first);
        return match (is_v4, normalize(bare)) {
            (Ok(addr), _) => Line::Address(addr),
            (_, Some(name)) => Line::Names(vec![name]),
            _ => Line::Bad,
        };
    }
    // A hosts-file line: every name after the address is listed.
    if is_v4.is_err() && first.parse::<std::net::Ipv6Addr>().is_err() {
        return Line::Bad;
    }
    let mut names = Vec::with_capacity(rest.len());
    for name in rest {
        match normalize(name) {
            Some(n) if is_hosts_boilerplate(&n) => {}
            Some(n) => names.push(n),
            None => return Line::Bad,
        }
    }
    if names.is_empty() {
        Line::Blank
    } else {
        Line::Names(names)
    }
}

/// What one list file held, read whole (for small lists and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParsedList {
    pub names: Vec<String>,
    pub addresses: Vec<Ipv4Addr>,
    pub skipped: Skipped,
}

/// Lines that were not valid entries: how many, and the first few.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub count: u64,
    /// Up to five of them, as (line number, text).
    pub examples: Vec<(u64, String)>,
}

impl Skipped {
    pub fn add(&mut self, line: u64, raw: &[u8]) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            let text = String::from_utf8_lossy(raw);
            let text = text.trim();
            // At most 120 bytes, cut on a character boundary.
            let end = (0..=text.len().min(120))
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            self.examples.push((line, text[..end].to_string()));
        }
    }
}

/// Parses a whole list.
pub fn parse(bytes: &[u8]) -> ParsedList {
    let mut out = ParsedList::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        match parse_line(raw) {
            Line::Blank => {}
            Line::Names(n) => out.names.extend(n),
            Line::Address(a) => out.addresses.push(a),
            Line::Bad => out.skipped.add(i as u64 + 1, raw),
        }
    }
    out
}

/// Names that hosts files map to themselves and must never be blocked.
fn is_hosts_boilerplate(name: &str) -> bool {
    matches!(
        name,
        "localhost"
            | "localhost.localdomain"
            | "local"
            | "broadcasthost"
            | "ip6-localhost"
            | "ip6-loopback"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ut1_domains_file() {
        let l = parse(b"0-casino.info\n000-Online-Casino.biz\n\n167.216.142.116\n.dyn.example\n");
        assert_eq!(
            l.names,
            ["0-casino.info", "000-online-casino.biz", "dyn.example"]
        );
        assert_eq!(l.addresses, [Ipv4Addr::new(167, 216, 142, 116)]);
        assert_eq!(l.skipped.count, 0);
    }

    #[test]
    fn hosts_file() {
        let l = parse(
            b"# comment\n127.0.0.1 localhost\n0.0.0.0 ads.example.com tracker.example.net # inline\n::1 ip6-localhost\n:: bad.example.org\n",
        );
        assert_eq!(
            l.names,
            ["ads.example.com", "tracker.example.net", "bad.example.org"]
        );
        assert!(l.addresses.is_empty());
        assert_eq!(l.skipped.count, 0);
    }

    #[test]
    fn long_non_ascii_lines_are_cut_on_a_character_boundary() {
        let line = "é".repeat(100);
        let l = parse(line.as_bytes());
        assert_eq!(l.skipped.count, 1);
        assert_eq!(l.skipped.examples[0].1, "é".repeat(60));
    }

    #[test]
    fn garbage_is_counted_with_examples() {
        let mut bytes =
            b"good.example\nnot a name\n*.wild.card\n\xff\xfe\nhttp://x.com/path\n".to_vec();
        bytes.extend(b"a..b\nok2.example\n");
        let l = parse(&bytes);
        assert_eq!(l.names, ["good.example", "ok2.example"]);
        assert_eq!(l.skipped.count, 5);
        assert_eq!(l.skipped.examples[0], (2, "not a name".to_string()));
        assert_eq!(l.skipped.examples.len(), 5);
    }
}
