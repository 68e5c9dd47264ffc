//! The installers the agent drives: RAUC on the firmware image, and a folder that
//! models two slots and the bootloader's boot counting for tests and trials.
//!
//! Both follow RAUC's GRUB scheme, which the image's `grub.cfg` implements: an order
//! of slots, and per slot `OK` (may boot) and `TRY` (booted once without being marked
//! good). A freshly installed slot goes first with `OK=1 TRY=0`; the bootloader sets
//! `TRY=1` when it boots it; `mark-good` clears `TRY`; a slot found with `TRY=1` at
//! the next boot (the new firmware never said it was good: a crash, a hang, a failed
//! health check) is skipped, so the box comes back on the other slot by itself.
//! Every call blocks (processes, fsync): the agent runs them off the runtime.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub(crate) enum InstallError {
    #[error("`{command}`: {detail}")]
    Command { command: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    State(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstallError {
    let what = what.into();
    move |source| InstallError::Io { what, source }
}

/// What runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Booted {
    pub(crate) slot: Option<String>,
    pub(crate) version: String,
}

pub(crate) trait Installer: Send + Sync {
    fn name(&self) -> &'static str;
    /// The slot booted and its firmware version.
    fn booted(&self) -> Result<Booted, InstallError>;
    /// Writes `bundle` (already checked) into the other slot and makes it boot next,
    /// once. `version` is the release's, as its signed manifest says.
    fn install(&self, bundle: &Path, version: &str) -> Result<(), InstallError>;
    fn mark_good(&self) -> Result<(), InstallError>;
    fn mark_bad(&self) -> Result<(), InstallError>;
    /// Asks for the reboot; returns once it is under way.
    fn reboot(&self) -> Result<(), InstallError>;
    /// Names this boot: a start with the same id as when the reboot was asked is the
    /// same boot (the daemon was restarted, the machine was not).
    fn boot_id(&self) -> String;
}

/// Runs `program args`, its standard output on success, else the error it printed.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, InstallError> {
    let shown = || format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| InstallError::Command {
            command: shown(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // RAUC prints progress lines first; the reason is the last line.
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim();
    Err(InstallError::Command {
        command: shown(),
        detail: format!("{} ({})", last, out.status),
    })
}

/// RAUC on the firmware image: `rauc install`, `rauc status`, and a reboot asked of
/// cartable-reboot.path.
pub(crate) struct Rauc {
    /// The running firmware's version (`IMAGE_VERSION` of the root it booted).
    pub(crate) version: String,
}

#[derive(Deserialize)]
struct RaucStatus {
    booted: Option<String>,
}

impl Installer for Rauc {
    fn name(&self) -> &'static str {
        "rauc"
    }

    fn boot_id(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    fn booted(&self) -> Result<Booted, InstallError> {
        let out = run("rauc", &["status", "--output-format=json"])?;
        let status: RaucStatus = serde_json::from_str(&out).map_err(|e| InstallError::Command {
            command: "rauc status --output-format=json".into(),
            detail: format!("unreadable: {e}"),
        })?;
        Ok(Booted {
            slot: status.booted,
            version: self.version.clone(),
        })
    }

    fn install(&self, bundle: &Path, _version: &str) -> Result<(), InstallError> {
        let path = bundle.to_string_lossy();
        run("rauc", &["install", &path]).map(drop)
    }

    fn mark_good(&self) -> Result<(), InstallError> {
        run("rauc", &["status", "mark-good"]).map(drop)
    }

    fn mark_bad(&self) -> Result<(), InstallError> {
        run("rauc", &["status", "mark-bad"]).map(drop)
    }

    fn reboot(&self) -> Result<(), InstallError> {
        // The daemon runs unprivileged on the firmware: it asks, and root's
        // cartable-reboot.path reboots. Elsewhere (run by hand, as root), systemctl.
        let runtime = Path::new(RUNTIME_DIR);
        if runtime.is_dir() {
            let request = runtime.join("reboot");
            return std::fs::write(&request, b"a firmware update is installed\n")
                .map_err(io(format!("asking for a reboot in {}", request.display())));
        }
        run("systemctl", &["reboot"]).map(drop)
    }
}

/// cartable.service's runtime folder: the daemon asks for a reboot by leaving
/// `reboot` there, which cartable-reboot.path (systemd/) watches.
const RUNTIME_DIR: &str = "/run/cartable";

/// Two slots in a folder: `A/` and `B/` hold what `rauc extract` took out of a
/// bundle and its `version`; `boot.json` is the bootloader's environment. A reboot
/// is the daemon's exit: the next start is the next boot, which reads `boot.json`
/// the way the image's GRUB does.
pub(crate) struct Directory {
    dir: PathBuf,
    keyring: PathBuf,
    booted: Booted,
    boot_id: String,
    /// Cancelled to "reboot": the daemon stops, and its next start boots.
    exit: CancellationToken,
}

/// The bootloader's environment, as GRUB's (ORDER, A_OK, A_TRY, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BootEnv {
    order: Vec<String>,
    ok: std::collections::BTreeMap<String, bool>,
    r#try: std::collections::BTreeMap<String, bool>,
    /// The slot the last boot chose.
    booted: String,
    /// A reboot was asked for: the next start of the daemon is a boot.
    reboot: bool,
    /// Boots so far (the boot's id).
    #[serde(default)]
    boots: u64,
}

const SLOTS: [&str; 2] = ["A", "B"];

impl Directory {
    /// Opens (or makes, with `first_version` on slot A) the folder and boots once if
    /// a reboot was asked for.
    pub(crate) fn open(
        dir: &Path,
        keyring: &Path,
        first_version: &str,
        exit: CancellationToken,
    ) -> Result<Directory, InstallError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let env_path = dir.join("boot.json");
        let mut env = match std::fs::read(&env_path) {
            Ok(bytes) => serde_json::from_slice::<BootEnv>(&bytes)
                .map_err(|e| InstallError::State(format!("{}: {e}", env_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let a = dir.join("A");
                std::fs::create_dir_all(&a).map_err(io("creating slot A"))?;
                write_synced(&a.join("version"), first_version.as_bytes())?;
                BootEnv {
                    order: vec!["A".into(), "B".into()],
                    ok: [("A".into(), true), ("B".into(), false)].into(),
                    r#try: [("A".into(), false), ("B".into(), false)].into(),
                    booted: "A".into(),
                    reboot: false,
                    boots: 0,
                }
            }
            Err(e) => return Err(io(format!("reading {}", env_path.display()))(e)),
        };
        if env.reboot {
            env.reboot = false;
            env.boots += 1;
            env.booted = boot(&mut env)?;
            tracing::info!(slot = %env.booted, "booted (directory backend)");
        }
        save_env(dir, &env)?;
        let version = std::fs::read_to_string(dir.join(&env.booted).join("version"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|_| first_version.to_string());
        Ok(Directory {
            dir: dir.to_path_buf(),
            keyring: keyring.to_path_buf(),
            boot_id: format!("directory-boot-{}", env.boots),
            booted: Booted {
                slot: Some(env.booted),
                version,
            },
            exit,
        })
    }

    fn env(&self) -> Result<BootEnv, InstallError> {
        let path = self.dir.join("boot.json");
        let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| InstallError::State(format!("{}: {e}", path.display())))
    }

    fn booted_slot(&self) -> &str {
        self.booted.slot.as_deref().unwrap_or("A")
    }
}

/// GRUB's choice: the first slot in order that may boot and was not already tried.
fn boot(env: &mut BootEnv) -> Result<String, InstallError> {
    for slot in env.order.clone() {
        let ok = env.ok.get(&slot).copied().unwrap_or(false);
        let tried = env.r#try.get(&slot).copied().unwrap_or(false);
        if ok && !tried {
            env.r#try.insert(slot.clone(), true);
            return Ok(slot);
        }
    }
    Err(InstallError::State(
        "no slot may boot (every one is bad or was tried)".into(),
    ))
}

fn save_env(dir: &Path, env: &BootEnv) -> Result<(), InstallError> {
    let text = serde_json::to_vec_pretty(env).map_err(|e| InstallError::State(e.to_string()))?;
    let tmp = dir.join("boot.json.tmp");
    write_synced(&tmp, &text)?;
    std::fs::rename(&tmp, dir.join("boot.json")).map_err(io("replacing boot.json"))?;
    sync_dir(dir)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", path.display())))
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}

impl Installer for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn boot_id(&self) -> String {
        self.boot_id.clone()
    }

    fn booted(&self) -> Result<Booted, InstallError> {
        Ok(self.booted.clone())
    }

    fn install(&self, bundle: &Path, version: &str) -> Result<(), InstallError> {
        let booted = self.booted_slot().to_string();
        let target = SLOTS.iter().find(|s| **s != booted).copied().unwrap_or("B");
        let fresh = self.dir.join(format!("{target}.new"));
        let _ = std::fs::remove_dir_all(&fresh);
        // `rauc extract` checks the signature again and the payload (a verity
        // bundle's hash tree), as `rauc install` does.
        let keyring = format!("--keyring={}", self.keyring.display());
        run(
            "rauc",
            &[
                "extract",
                &keyring,
                &bundle.to_string_lossy(),
                &fresh.to_string_lossy(),
            ],
        )?;
        write_synced(&fresh.join("version"), version.as_bytes())?;
        sync_dir(&fresh)?;
        let slot = self.dir.join(target);
        let mut env = self.env()?;
        // The slot is unbootable while it is being replaced.
        env.ok.insert(target.into(), false);
        save_env(&self.dir, &env)?;
        let _ = std::fs::remove_dir_all(&slot);
        std::fs::rename(&fresh, &slot).map_err(io(format!("placing slot {target}")))?;
        sync_dir(&self.dir)?;
        env.ok.insert(target.into(), true);
        env.r#try.insert(target.into(), false);
        env.order = vec![target.to_string(), booted];
        save_env(&self.dir, &env)
    }

    fn mark_good(&self) -> Result<(), InstallError> {
        let mut env = self.env()?;
        let slot = self.booted_slot().to_string();
        env.ok.insert(slot.clone(), true);
        env.r#try.insert(slot, false);
        save_env(&self.dir, &env)
    }

    fn mark_bad(&self) -> Result<(), InstallError> {
        let mut env = self.env()?;
        env.ok.insert(self.booted_slot().to_string(), false);
        save_env(&self.dir, &env)
    }

    fn reboot(&self) -> Result<(), InstallError> {
        let mut env = self.env()?;
        env.reboot = true;
        save_env(&self.dir, &env)?;
        self.exit.cancel();
        Ok(())
    }
}

/// What `rauc info` says of a bundle whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct BundleInfo {
    pub(crate) compatible: String,
    pub(crate) version: Option<String>,
}

/// Checks the bundle's signature against `keyring` (RAUC's own check) and reads its
/// manifest.
pub(crate) fn rauc_info(bundle: &Path, keyring: &Path) -> Result<BundleInfo, InstallError> {
    let keyring = format!("--keyring={}", keyring.display());
    let out = run(
        "rauc",
        &[
            "info",
            &keyring,
            "--output-format=json",
            &bundle.to_string_lossy(),
        ],
    )?;
    // `rauc info` prints messages before its JSON on some versions.
    let json = out.find('{').map_or("", |i| &out[i..]);
    serde_json::from_str(json).map_err(|e| InstallError::Command {
        command: "rauc info".into(),
        detail: format!("unreadable: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_modelled_bootloader_tries_a_new_slot_once_then_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Directory::open(
                dir.path(),
                Path::new("/nonexistent"),
                "1.0",
                CancellationToken::new(),
            )
            .unwrap()
        };
        let d = open();
        assert_eq!(d.booted().unwrap().slot.as_deref(), Some("A"));
        // As install does, without a bundle: B first, may boot, not tried.
        std::fs::create_dir_all(dir.path().join("B")).unwrap();
        std::fs::write(dir.path().join("B/version"), "2.0").unwrap();
        let mut env = d.env().unwrap();
        env.ok.insert("B".into(), true);
        env.order = vec!["B".into(), "A".into()];
        save_env(dir.path(), &env).unwrap();
        // A restart without a reboot is not a boot.
        assert_eq!(open().booted().unwrap().slot.as_deref(), Some("A"));
        d.reboot().unwrap();
        let d = open();
        assert_eq!(
            d.booted().unwrap(),
            Booted {
                slot: Some("B".into()),
                version: "2.0".into()
            }
        );
        // Never marked good: the next boot skips B.
        d.reboot().unwrap();
        let d = open();
        assert_eq!(d.booted().unwrap().slot.as_deref(), Some("A"));
        // Marked good, B would have stayed.
        let mut env = d.env().unwrap();
        env.r#try.insert("B".into(), false);
        save_env(dir.path(), &env).unwrap();
        d.reboot().unwrap();
        let d = open();
        assert_eq!(d.booted().unwrap().slot.as_deref(), Some("B"));
        d.mark_good().unwrap();
        d.reboot().unwrap();
        assert_eq!(open().booted().unwrap().slot.as_deref(), Some("B"));
    }
}
