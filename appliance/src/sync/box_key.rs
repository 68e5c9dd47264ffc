//! The box's own signing key: everything the box publishes to the central side is
//! sealed with it (`cartable_protocol::sealed`), so the central side can tell the box's
//! messages from anyone else's on the broker.
//!
//! Made once, at the first start, in the data folder (mode 0600); it never leaves the
//! box. Its public half is shown by `cartable status` and pinned by the central side at
//! first contact (or ahead of time with `cartable-central box add`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

const FILE: &str = "box.key";

/// The key in `data_dir`, made if there is none yet.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Ed25519KeyPair> {
    let path = data_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ed25519KeyPair::from_pkcs8(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not an Ed25519 PKCS#8 key ({e}); move it away to make a new one \
                 (the central side must then be told the new key)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn create(path: &Path) -> anyhow::Result<Ed25519KeyPair> {
    // A first start may come before anything else made the data folder (the key now
    // comes first when the box is named after it).
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    // Written aside and renamed: a power cut leaves no half key behind, and of two
    // processes racing here the second one reads the first one's key.
    let tmp = path.with_extension("key.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(pkcs8.as_ref())?;
    file.sync_all()?;
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            return load_or_create(path.parent().unwrap_or(Path::new(".")));
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    let _ = std::fs::remove_file(&tmp);
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `[appliance] id = "auto"`: the box is named after its key. One firmware image goes
/// to every school, so its configuration cannot name each box; the key made on its
/// first boot is its own, and so is a name taken from it.
pub const AUTO_ID: &str = "auto";

/// `box-` and the first 8 hex digits of the key's public half.
pub fn id_from_key(key: &Ed25519KeyPair) -> String {
    use ring::signature::KeyPair;
    let public = cartable_protocol::desired::hex(key.public_key().as_ref());
    format!("box-{}", &public[..8])
}

/// The box's key (made now if there is none), read once, and the configuration with
/// `id = "auto"` replaced by the name taken from it; any other id is kept.
pub fn resolve_id(
    mut config: crate::config::Config,
) -> anyhow::Result<(crate::config::Config, Ed25519KeyPair)> {
    let key = load_or_create(&config.appliance.data_dir)?;
    if config.appliance.id.as_str() == AUTO_ID {
        config.appliance.id = id_from_key(&key)
            .try_into()
            .map_err(|e: String| anyhow::anyhow!(e))?;
    }
    Ok((config, key))
}

#[cfg(test)]
mod tests {
    use ring::signature::KeyPair;

    #[test]
    fn an_auto_id_is_the_keys_and_any_other_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::default();
        config.appliance.data_dir = dir.path().to_path_buf();
        config.appliance.id = "auto".to_string().try_into().unwrap();
        let id = super::resolve_id(config.clone()).unwrap().0.appliance.id;
        let key = super::load_or_create(dir.path()).unwrap();
        let hex = cartable_protocol::desired::hex(key.public_key().as_ref());
        assert_eq!(id.as_str(), format!("box-{}", &hex[..8]));
        assert_eq!(
            super::resolve_id(config.clone()).unwrap().0.appliance.id,
            id
        );
        config.appliance.id = "ecole-jaures".to_string().try_into().unwrap();
        let kept = super::resolve_id(config.clone()).unwrap().0.appliance.id;
        assert_eq!(kept.as_str(), "ecole-jaures");
        // A data folder not made yet is made (the first start of a new box).
        config.appliance.data_dir = dir.path().join("not/yet");
        config.appliance.id = "auto".to_string().try_into().unwrap();
        let id = super::resolve_id(config).unwrap().0.appliance.id;
        assert!(id.as_str().starts_with("box-"), "{id:?}");
    }

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::load_or_create(dir.path()).unwrap();
        let again = super::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key().as_ref(), again.public_key().as_ref());
        let mode = std::fs::metadata(dir.path().join(super::FILE)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        std::fs::write(dir.path().join(super::FILE), b"garbage").unwrap();
        let e = super::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("box.key"), "{e}");
    }
}
