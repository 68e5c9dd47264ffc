//! `dig` as the DNS client of tests, its output parsed.

use std::net::SocketAddr;
use std::process::Command;

/// What dig printed.
#[derive(Debug, Clone, Default)]
pub struct DigAnswer {
    /// NOERROR, NXDOMAIN, REFUSED, ...; empty when no answer came.
    pub status: String,
    pub flags: Vec<String>,
    /// (name, ttl, type, data) of the answer section.
    pub answers: Vec<(String, u32, String, String)>,
    pub raw: String,
}

impl DigAnswer {
    pub fn data(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| a.2 == rtype)
            .map(|a| a.3.clone())
            .collect()
    }
}

/// Queries `server` for `name`/`rtype`; `extra` are more dig options (`-b`, `+tcp`...).
pub fn dig(server: SocketAddr, name: &str, rtype: &str, extra: &[&str]) -> DigAnswer {
    dig_with(Command::new("dig"), server, name, rtype, extra)
}

/// [`dig`] run inside the network namespace `netns`.
pub fn dig_in(
    netns: &str,
    server: SocketAddr,
    name: &str,
    rtype: &str,
    extra: &[&str],
) -> DigAnswer {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns, "dig"]);
    dig_with(c, server, name, rtype, extra)
}

/// `kdig` over TLS (RFC 7858) inside `netns`, without checking the certificate
/// (opportunistic, as Android's automatic Private DNS).
pub fn kdig_tls_in(netns: &str, server: SocketAddr, name: &str, rtype: &str) -> DigAnswer {
    let out = Command::new("ip")
        .args([
            "netns", "exec", netns, "kdig", "+tls", "+time=3", "+retry=0",
        ])
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .arg(name)
        .args(["-t", rtype])
        .output()
        .expect("kdig is installed (tests/run installs knot-dnsutils)");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    parse(&text)
}

fn dig_with(
    mut cmd: Command,
    server: SocketAddr,
    name: &str,
    rtype: &str,
    extra: &[&str],
) -> DigAnswer {
    let out = cmd
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+time=2", "+tries=1", "+noall", "+comments", "+answer"])
        .args(extra)
        .arg(name)
        .arg(rtype)
        .output()
        .expect("dig is installed (tests/run installs dnsutils)");
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(text: &str) -> DigAnswer {
    let mut a = DigAnswer {
        raw: text.to_string(),
        ..DigAnswer::default()
    };
    let mut in_answer = false;
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            // dig ends the status with a comma, kdig with a semicolon.
            a.status = rest
                .split([',', ';'])
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            a.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
            continue;
        }
        if line.starts_with(";;") || line.trim().is_empty() {
            if line.trim().is_empty() {
                in_answer = false;
            }
            continue;
        }
        if in_answer {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                a.answers.push((
                    f[0].trim_end_matches('.').to_string(),
                    f[1].parse().unwrap_or(0),
                    f[3].to_string(),
                    f[4..].join(" ").trim_end_matches('.').to_string(),
                ));
            }
        }
    }
    a
}
