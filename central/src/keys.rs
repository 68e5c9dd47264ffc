//! The fleet signing key. Boxes pin its public half at enrolment and act on nothing
//! from the central side that it did not sign.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// Writes a new PKCS#8 key to `path` (mode 0600) and returns the public key in hex.
pub fn generate(path: &Path, force: bool) -> anyhow::Result<String> {
    if path.exists() && !force {
        bail!(
            "{} exists; pass --force to replace it (every box pinned to the old key must then be re-enrolled)",
            path.display()
        );
    }
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pkcs8.as_ref())?;
    file.sync_all()?;
    let pair = load(path)?;
    Ok(hex(pair.public_key().as_ref()))
}

/// Reads a key written by [`generate`].
pub fn load(path: &Path) -> anyhow::Result<Ed25519KeyPair> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ed25519KeyPair::from_pkcs8(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
