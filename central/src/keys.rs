//! The fleet's keys: the offline root, the working key the console signs with, the
//! root's certificates and revocations (`cartable_protocol::keyring`).
//!
//! The ceremony (README, "Fleet keys"): on an offline machine, `keygen --root` makes
//! the root key, whose public half every box pins; on the console, `keygen` makes a
//! working key; back on the offline machine, `certify` signs the working key's public
//! half for a period; the certificate goes next to the working key on the console. A
//! leaked working key is ended by `revoke` (offline) and `revocations publish`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cartable_protocol::desired::hex;
use cartable_protocol::keyring::{self, Certificate, RevocationList, WorkingKey};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// Writes a new PKCS#8 key to `path` (mode 0600) and returns the public key in hex.
pub fn generate(path: &Path, force: bool) -> anyhow::Result<String> {
    if path.exists() && !force {
        bail!(
            "{} exists; pass --force to replace it (a root key pinned by boxes cannot be \
             replaced without re-enrolling them)",
            path.display()
        );
    }
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    write_private(path, pkcs8.as_ref())?;
    let pair = load(path)?;
    Ok(hex(pair.public_key().as_ref()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Reads a key written by [`generate`].
pub fn load(path: &Path) -> anyhow::Result<Ed25519KeyPair> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ed25519KeyPair::from_pkcs8(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))
}

/// Where a working key's certificate is kept: beside it.
pub fn certificate_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".cert");
    PathBuf::from(p)
}

/// The root certifies the working key `public` (hex) from `not_before` for `days`.
pub fn certify(
    root: &Path,
    public: &str,
    name: &str,
    not_before: i64,
    days: u32,
) -> anyhow::Result<Certificate> {
    if days == 0 || days > 3 * 366 {
        bail!("--days must be 1 to 1098: a working key is replaced, not kept forever");
    }
    let key = public.to_ascii_lowercase();
    if keyring::public_key(&key).is_none() {
        bail!("the working key must be 64 hex digits (what `keygen` printed)");
    }
    let root = load(root)?;
    Ok(keyring::certify(
        &root,
        &WorkingKey {
            key,
            name: name.to_string(),
            not_before,
            not_after: not_before + i64::from(days) * 86_400,
        },
    ))
}

/// A working key with its certificate, checked to belong together.
pub struct Signer {
    pub key: Ed25519KeyPair,
    pub certificate: Certificate,
    pub working: WorkingKey,
}

/// Loads the working key at `key` and its certificate (default: `key` + `.cert`).
pub fn signer(key: &Path, certificate: Option<&Path>) -> anyhow::Result<Signer> {
    let pair = load(key)?;
    let cert_path = certificate.map_or_else(|| certificate_path(key), Path::to_path_buf);
    let text = std::fs::read_to_string(&cert_path).with_context(|| {
        format!(
            "reading {} (the root's certificate for this key: `cartable-central certify`)",
            cert_path.display()
        )
    })?;
    let certificate: Certificate =
        serde_json::from_str(&text).with_context(|| format!("{}", cert_path.display()))?;
    let working: WorkingKey = serde_json::from_str(&certificate.payload)
        .with_context(|| format!("{}", cert_path.display()))?;
    if working.key != hex(pair.public_key().as_ref()) {
        bail!(
            "{} certifies {}, not the key in {}",
            cert_path.display(),
            working.key,
            key.display()
        );
    }
    Ok(Signer {
        key: pair,
        certificate,
        working,
    })
}

/// The root signs the list of revoked working keys (each list names them all).
pub fn revoke(root: &Path, keys: &[String], issued_at: i64) -> anyhow::Result<Vec<u8>> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_ascii_lowercase()).collect();
    for k in &keys {
        if keyring::public_key(k).is_none() {
            bail!("`{k}` is not a working key (64 hex digits)");
        }
    }
    let root = load(root)?;
    let signed = keyring::revoke(&root, &RevocationList { issued_at, keys });
    Ok(serde_json::to_vec_pretty(&signed)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartable_protocol::desired::unhex;
    use ring::signature::{ED25519, UnparsedPublicKey};

    #[test]
    fn a_generated_key_signs_what_its_public_half_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.key");
        let public = generate(&path, false).unwrap();
        assert_eq!(public.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let pair = load(&path).unwrap();
        let sig = pair.sign(b"policy v2");
        let key = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
        assert!(key.verify(b"policy v2", sig.as_ref()).is_ok());
        assert!(key.verify(b"policy v3", sig.as_ref()).is_err());

        assert!(generate(&path, false).is_err(), "an existing key is kept");
        assert_ne!(generate(&path, true).unwrap(), public);
    }

    #[test]
    fn the_ceremony_gives_a_signer_whose_certificate_the_root_vouches_for() {
        let dir = tempfile::tempdir().unwrap();
        let (root, working) = (dir.path().join("root.key"), dir.path().join("fleet.key"));
        let root_pub = generate(&root, false).unwrap();
        let working_pub = generate(&working, false).unwrap();
        let cert = certify(&root, &working_pub, "console", 1_700_000_000, 365).unwrap();
        std::fs::write(
            certificate_path(&working),
            serde_json::to_vec(&cert).unwrap(),
        )
        .unwrap();
        let s = signer(&working, None).unwrap();
        assert_eq!(s.working.not_after, 1_700_000_000 + 365 * 86_400);
        assert_eq!(
            keyring::check_certificate(&s.certificate, &unhex(&root_pub).unwrap()),
            Ok(s.working.clone())
        );

        // A certificate for another key is caught before anything is signed.
        let other = dir.path().join("other.key");
        generate(&other, false).unwrap();
        std::fs::copy(certificate_path(&working), certificate_path(&other)).unwrap();
        assert!(signer(&other, None).is_err());
        assert!(certify(&root, &working_pub, "x", 0, 0).is_err());
        assert!(certify(&root, "beef", "x", 0, 30).is_err());

        let list = revoke(&root, std::slice::from_ref(&working_pub), 1_750_000_000).unwrap();
        let opened = keyring::open_revocations(&list, &unhex(&root_pub).unwrap()).unwrap();
        assert_eq!(opened.keys, vec![working_pub]);
    }
}
