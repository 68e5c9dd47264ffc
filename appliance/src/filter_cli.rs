//! `cartable filter test` and `cartable filter lists`: the filter as an admin
//! inspects it from the command line, from the configuration file.

use std::net::IpAddr;

use anyhow::Context;

use crate::base::clock::LocalTime;
use crate::config::Config;
use crate::filter::{load, name};

/// What the filter decides for `domain` asked by `client` at `at` (`YYYY-MM-DD
/// HH:MM` in the filter's zone, now if absent): the explanation, as printed.
pub fn test(
    config: &Config,
    domain: &str,
    client: IpAddr,
    at: Option<&str>,
) -> anyhow::Result<String> {
    let Some(name) = name::normalize(domain) else {
        anyhow::bail!("`{domain}` is not a domain name");
    };
    let zone = config.filter.timezone.zone();
    let instant = match at {
        Some(text) => {
            let dt: jiff::civil::DateTime = text
                .replace(' ', "T")
                .parse()
                .with_context(|| format!("`{text}` is not YYYY-MM-DD HH:MM"))?;
            dt.to_zoned(zone.clone())?.timestamp()
        }
        None => jiff::Timestamp::now(),
    };
    let loaded = load::load(
        &config.filter_sources(),
        &config.filter.policies,
        config.dns.block_mode,
    )?;
    let filter = &loaded.filter;
    let verdict = filter.decide(&name, client, LocalTime::at(instant, &zone), None);
    Ok(filter.explain(&name, &verdict))
}

/// Every category with its count, then the totals; and the warnings of the compile.
pub fn lists(config: &Config) -> anyhow::Result<(String, Vec<String>)> {
    let loaded = load::load(
        &config.filter_sources(),
        &config.filter.policies,
        config.dns.block_mode,
    )?;
    let index = &loaded.filter.index;
    let mut out = String::new();
    for c in index.categories() {
        let title = c.titles.get("fr").map(String::as_str).unwrap_or("");
        let aliases = if c.aliases.is_empty() {
            String::new()
        } else {
            format!(" (also {})", c.aliases.join(", "))
        };
        out.push_str(&format!(
            "{:<22} {:>9}  {:?}  {title}{aliases}\n",
            c.name, c.entries, c.kind
        ));
    }
    out.push_str(&format!(
        "{} names in {} categories, index {} bytes, compiled in {} ms\n",
        index.names(),
        index.categories().len(),
        index.map_bytes(),
        loaded.took.as_millis()
    ));
    Ok((out, loaded.warnings.clone()))
}
