//! `cartable-central policy publish` and `catalogue publish`: sign desired state with
//! the working key (its root certificate attached) and leave it retained on the
//! broker, for the whole fleet, one site or one box; `revocations publish` leaves the
//! root's revocation list there. Boxes that are offline get them when they reconnect.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use cartable_protocol::desired::{self, Body, Catalogue, Desired, PolicySet};
use cartable_protocol::topics::{self, Scope};
use rumqttc::{AsyncClient, Event, Incoming, Outgoing, QoS};

use crate::broker::BrokerArgs;
use crate::keys::Signer;

/// Reads a policy set (JSON, or TOML with `[[policy]]` tables like the box's config).
pub fn read_policies(path: &Path) -> anyhow::Result<PolicySet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "toml") {
        policies_from_toml(&text)
    } else {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    };
    parsed.map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
}

/// A policy set as an admin wrote it on the console's page: JSON if it opens with
/// `{`, else TOML.
pub fn policies_from_text(text: &str) -> anyhow::Result<PolicySet> {
    if text.trim_start().starts_with('{') {
        Ok(serde_json::from_str(text)?)
    } else {
        policies_from_toml(text)
    }
}

/// `[[policy]]` tables, and the addresses of public resolvers carts refuse.
fn policies_from_toml(text: &str) -> anyhow::Result<PolicySet> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        policy: Vec<desired::Policy>,
        /// Public resolvers' addresses carts refuse (DNS over HTTPS by address).
        #[serde(default)]
        resolver_addresses: Vec<String>,
    }
    let f: File = toml::from_str(text)?;
    if let Some(bad) = f
        .resolver_addresses
        .iter()
        .find(|a| a.parse::<std::net::IpAddr>().is_err())
    {
        bail!("resolver_addresses: `{bad}` is not an IP address");
    }
    Ok(PolicySet {
        policies: f.policy,
        resolver_addresses: f.resolver_addresses,
    })
}

/// Reads a catalogue (`{"items": [...]}`).
pub fn read_catalogue(path: &Path) -> anyhow::Result<Catalogue> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    catalogue_from_text(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
}

/// A catalogue's JSON, each item's digest checked.
pub fn catalogue_from_text(text: &str) -> anyhow::Result<Catalogue> {
    let c: Catalogue = serde_json::from_str(text)?;
    for item in &c.items {
        if item.sha256.len() != 64 || !item.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("item `{}`: sha256 must be 64 hex digits", item.id);
        }
    }
    Ok(c)
}

pub fn scope(site: Option<String>, box_id: Option<String>) -> anyhow::Result<Scope> {
    for n in site.iter().chain(box_id.iter()) {
        if !topics::valid_name(n) || n == topics::FLEET {
            bail!("`{n}` is not a site or box name (1 to 64 of a-z, 0-9, - and _)");
        }
    }
    Ok(match (site, box_id) {
        (None, None) => Scope::Fleet,
        (Some(site), None) => Scope::Site { site },
        (Some(site), Some(b)) => Scope::Box { site, r#box: b },
        (None, Some(_)) => bail!("--box needs --site"),
    })
}

/// Signs `body` for `scope` and publishes it retained; returns the topic and version.
pub async fn publish(
    signer: &Signer,
    broker: &BrokerArgs,
    scope: Scope,
    body: Body,
    version: Option<u64>,
) -> anyhow::Result<(String, u64)> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let issued_at = now.as_secs() as i64;
    let w = &signer.working;
    if issued_at < w.not_before || issued_at > w.not_after {
        bail!(
            "the working key's certificate is valid from {} to {} (unix time), not now ({issued_at}): \
             have the root certify a key for now",
            w.not_before,
            w.not_after
        );
    }
    let version = version.unwrap_or(now.as_millis() as u64);
    if version > desired::max_version(issued_at) {
        bail!("version {version} is ahead of the signing time; boxes would refuse it");
    }
    let doc = Desired {
        version,
        scope: scope.clone(),
        issued_at,
        body,
    };
    let topic = topics::desired(&scope, doc.kind());
    let envelope = serde_json::to_vec(&desired::seal(&signer.key, &signer.certificate, &doc))?;
    send(broker, &topic, envelope, true).await?;
    Ok((topic, version))
}

/// Publishes one QoS 1 message and waits for the broker's ack.
pub async fn send(
    broker: &BrokerArgs,
    topic: &str,
    payload: Vec<u8>,
    retain: bool,
) -> anyhow::Result<()> {
    // A client id per publication: two at once (two admins on the page) must not
    // take each other's session.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("cartable-central-publish-{}-{n}", std::process::id());
    let options = broker.options(&id)?;
    let shown = broker.broker.as_str();
    let (client, mut eventloop) = AsyncClient::new(options, 8);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await?;
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        let mut pkid = None;
        loop {
            match eventloop.poll().await? {
                Event::Outgoing(Outgoing::Publish(p)) => pkid = Some(p),
                Event::Incoming(Incoming::PubAck(a)) if Some(a.pkid) == pkid => {
                    return anyhow::Ok(());
                }
                _ => {}
            }
        }
    })
    .await;
    match waited {
        Ok(r) => r.with_context(|| format!("publishing to {shown}"))?,
        Err(_) => bail!("no ack from the broker at {shown} in 20 s"),
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_policy_file_carries_the_carts_resolver_addresses_and_refuses_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policies.toml");
        let policy =
            "[[policy]]\nname = \"ecole\"\ndefault = true\nmacs = [\"02:00:00:00:00:01\"]\n";
        std::fs::write(
            &path,
            format!("resolver_addresses = [\"203.0.113.53\", \"2001:db8::53\"]\n{policy}"),
        )
        .unwrap();
        let set = super::read_policies(&path).unwrap();
        assert_eq!(set.resolver_addresses, ["203.0.113.53", "2001:db8::53"]);
        assert_eq!(set.policies[0].macs, ["02:00:00:00:00:01"]);
        std::fs::write(
            &path,
            format!("resolver_addresses = [\"dns.example\"]\n{policy}"),
        )
        .unwrap();
        let e = super::read_policies(&path).unwrap_err().to_string();
        assert!(e.contains("`dns.example` is not an IP address"), "{e}");
    }
}
