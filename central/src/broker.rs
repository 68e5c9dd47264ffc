//! How the central side reaches the fleet's broker: the same choices a box has
//! (`mqtt://` or `mqtts://`, a CA file, a client certificate, a username and password),
//! shared by `serve` and every `publish`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};

/// The broker and the central side's credentials on it.
#[derive(clap::Args, Clone, Debug)]
pub struct BrokerArgs {
    /// The fleet's MQTT broker: `mqtt://host:port`, `mqtts://host:port` (TLS) or
    /// `host:port`.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,
    /// The CA certificate (PEM) that signs the broker's certificate, for `mqtts://`.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The central side's client certificate (PEM), for brokers that require one.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The username on the broker (its ACL lets this account write desired state).
    #[arg(long)]
    pub username: Option<String>,
    /// A file whose first line is the password.
    #[arg(long, requires = "username")]
    pub password_file: Option<PathBuf>,
}

/// A broker address, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Address {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

pub fn parse(broker: &str) -> anyhow::Result<Address> {
    let (tls, rest) = if let Some(r) = broker.strip_prefix("mqtts://") {
        (true, r)
    } else {
        (false, broker.strip_prefix("mqtt://").unwrap_or(broker))
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("`{broker}` is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        bail!("`{broker}` has no host");
    }
    Ok(Address {
        tls,
        host: host.to_string(),
        port: port
            .parse()
            .map_err(|_| anyhow::anyhow!("`{port}` is not a port"))?,
    })
}

impl BrokerArgs {
    /// Client options for `client_id`, with TLS and credentials as asked.
    pub fn options(&self, client_id: &str) -> anyhow::Result<MqttOptions> {
        let address = parse(&self.broker)?;
        let mut o = MqttOptions::new(client_id, address.host.clone(), address.port);
        o.set_max_packet_size(8 << 20, 8 << 20);
        if let Some(user) = &self.username {
            let password = match &self.password_file {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                None => String::new(),
            };
            o.set_credentials(user.clone(), password);
        }
        if address.tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let ca_file = self.ca_file.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}` is TLS: give the broker's CA with --ca-file",
                    self.broker
                )
            })?;
            let read =
                |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let client_auth = match (&self.client_cert, &self.client_key) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                _ => None,
            };
            o.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca: read(ca_file)?,
                alpn: None,
                client_auth,
            }));
        } else if self.ca_file.is_some() || self.client_cert.is_some() {
            bail!("--ca-file and --client-cert need an mqtts:// broker");
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_parse_with_or_without_a_scheme() {
        assert_eq!(
            parse("mqtts://broker.example:8883").unwrap(),
            Address {
                tls: true,
                host: "broker.example".into(),
                port: 8883
            }
        );
        assert_eq!(parse("127.0.0.1:1883").unwrap().port, 1883);
        assert_eq!(parse("mqtt://[::1]:1883").unwrap().host, "::1");
        assert!(parse("broker").is_err());
        assert!(parse("mqtt://:1883").is_err());
        assert!(parse("mqtt://h:port").is_err());
    }
}
