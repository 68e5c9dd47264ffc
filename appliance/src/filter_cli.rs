//! `cartable filter test` and `cartable filter lists`: the filter as an admin
//! inspects it from the command line: the running daemon's verdict when one runs, the
//! configuration file's (and the store's) otherwise.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;

use crate::base::clock::LocalTime;
use crate::config::Config;
use crate::filter::{load, name};

/// What the filter decides for `domain` asked by `client` at `at` (`YYYY-MM-DD
/// HH:MM` in the filter's zone, now if absent): the explanation, as printed.
///
/// The running daemon is asked first: it alone knows the policies in force (the
/// central side's, once it sent some) and the hub's rules for each tablet. Without
/// one, the lists are compiled here with the policies the daemon would start with:
/// the central side's stored ones if any, else the configuration file's.
pub async fn test(
    config: &Config,
    domain: &str,
    client: IpAddr,
    at: Option<&str>,
) -> anyhow::Result<String> {
    let Some(name) = name::normalize(domain) else {
        anyhow::bail!("`{domain}` is not a domain name");
    };
    let daemon = crate::status_client::local_address(config.http.listen);
    match ask_daemon(daemon, &name, client, at).await {
        Ok(answer) => {
            return Ok(format!(
                "{}(asked the running daemon at {daemon}; policies from {})\n",
                answer.explanation, answer.policies_from
            ));
        }
        Err(e) => tracing::debug!(error = %e, "no daemon to ask"),
    }
    let zone = config.filter.timezone.zone();
    let now = match at {
        Some(text) => LocalTime::parse(text, &zone).map_err(anyhow::Error::msg)?,
        None => LocalTime::at(jiff::Timestamp::now(), &zone),
    };
    let (policies, from) = match stored_policies(config) {
        Some(p) => (p, "the central side (signed, stored)"),
        None => (config.filter.policies.clone(), "the configuration file"),
    };
    let loaded = load::load(&config.filter_sources(), &policies, config.dns.block_mode)?;
    let filter = &loaded.filter;
    let verdict = filter.decide(&name, client, now, None);
    Ok(format!(
        "{}(no daemon answers at {daemon}: decided here, with policies from {from})\n",
        filter.explain(&name, &verdict)
    ))
}

#[derive(serde::Deserialize)]
struct DaemonAnswer {
    explanation: String,
    policies_from: String,
}

/// `GET /api/v1/filter/test` on the daemon.
async fn ask_daemon(
    addr: SocketAddr,
    name: &str,
    client: IpAddr,
    at: Option<&str>,
) -> anyhow::Result<DaemonAnswer> {
    let mut path = format!("/api/v1/filter/test?name={name}&client={client}");
    if let Some(at) = at {
        path.push_str(&format!("&at={}", at.trim().replace(' ', "T")));
    }
    let r = cartable_agent::http::request(addr, "GET", &path, &[], None).await?;
    if r.status != 200 {
        anyhow::bail!("the daemon answered {}: {}", r.status, r.body.trim());
    }
    serde_json::from_str(&r.body).context("the daemon's answer is not a verdict")
}

/// The central side's policies the daemon stored, when its store exists.
fn stored_policies(config: &Config) -> Option<Vec<crate::filter::policy::PolicyConfig>> {
    let data_dir = &config.appliance.data_dir;
    if !data_dir.join("cartable.db").exists() {
        return None;
    }
    let store = crate::store::Store::open(data_dir).ok()?;
    let key = config
        .sync
        .fleet_public_key
        .as_ref()
        .map(|k| k.0.as_slice());
    let policies = crate::sync::desired::stored_policies(&store, key);
    store.close();
    policies
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
