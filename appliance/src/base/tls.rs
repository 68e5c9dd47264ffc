//! TLS (rustls with ring, no aws-lc): one place builds the root store and the client
//! configuration that DNS-over-TLS upstreams, the sync link's broker and the cache's
//! HTTPS origins use, and the server configuration of the box's own DNS over TLS
//! (with the self-signed certificate made at first start when none is given).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Debian's (and Buildroot's) bundle of the system's trusted CAs.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The certificates of `ca_file` (PEM), or the system's when none is given.
pub(crate) fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_BUNDLE));
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| at(&e))? {
        roots.add(cert.map_err(|e| at(&e))?).map_err(|e| at(&e))?;
    }
    if roots.is_empty() {
        return Err(at(&"no certificate"));
    }
    Ok(roots)
}

/// The crypto provider every TLS configuration of the box uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting the CAs in `ca_file`, or the system's bundle.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    client_config_with_identity(ca_file, None)
}

/// [`client_config`] that also shows a client certificate (`cert`, `key`: PEM files),
/// for servers that authenticate the box by certificate.
pub(crate) fn client_config_with_identity(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = root_store(ca_file)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect())
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
    };
    Ok(Arc::new(config))
}

/// A server configuration with the certificate chain and key of these PEM files,
/// offering `alpn` (most preferred first).
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The box's own certificate and key in `dir` (`cert.pem`, `key.pem`), made
/// self-signed for `names` the first time: enough for opportunistic DNS over TLS,
/// which encrypts without authenticating. The key is written readable by its owner
/// only, and both files appear whole or not at all.
pub(crate) fn self_signed(
    dir: &Path,
    names: Vec<String>,
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |path: &Path, text: String, mode: u32| -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let at = |e: std::io::Error| format!("{}: {e}", tmp.display());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(at)?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(at)?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(&key, made.signing_key.serialize_pem(), 0o600)?;
    write(&cert, made.cert.pem(), 0o644)?;
    tracing::info!(cert = %cert.display(), "self-signed certificate made for DNS over TLS");
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_without_certificates_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = super::client_config(Some(&empty)).unwrap_err();
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
        assert!(super::root_store(Some(&dir.path().join("missing.pem"))).is_err());
    }
}
