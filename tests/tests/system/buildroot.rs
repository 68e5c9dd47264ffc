//! The Buildroot tree (`buildroot-config/`) as Buildroot itself reads it, with the
//! vendored LTS release (shared/vendor): each defconfig survives a Kconfig round trip
//! line for line (Kconfig silently drops a symbol it does not know or whose
//! dependencies are off, so a dropped line is a feature the firmware would lack), and
//! `utils/check-package` finds nothing to say about `package/cartable/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cartable_systests::bins::workspace_root;

const BUILDROOT: &str = "buildroot-2025.02.16";

/// Buildroot unpacked in `dir`.
fn unpack(dir: &Path) -> PathBuf {
    let archive = workspace_root().join(format!("../shared/vendor/{BUILDROOT}.tar.xz"));
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "unpacking {}", archive.display());
    dir.join(BUILDROOT)
}

fn lines(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn make(buildroot: &Path, args: &[&str]) {
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(buildroot)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_defconfig_survives_the_kconfig_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let buildroot = unpack(dir.path());
    let tree = workspace_root().join("buildroot-config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(tree.join("configs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let out = dir.path().join(&name);
        let external = format!("BR2_EXTERNAL={}", tree.display());
        make(
            &buildroot,
            &[&format!("O={}", out.display()), &external, &name],
        );
        let saved = out.join("saved");
        make(
            &buildroot,
            &[
                &format!("O={}", out.display()),
                "savedefconfig",
                &format!("BR2_DEFCONFIG={}", saved.display()),
            ],
        );
        let (committed, kept) = (lines(&path), lines(&saved));
        let dropped: Vec<_> = committed.difference(&kept).collect();
        let added: Vec<_> = kept.difference(&committed).collect();
        assert!(
            dropped.is_empty() && added.is_empty(),
            "{name}: Kconfig dropped {dropped:?} and added {added:?}"
        );
        let config = std::fs::read_to_string(out.join(".config")).unwrap();
        for wanted in [
            "BR2_PACKAGE_CARTABLE=y",
            "BR2_INIT_SYSTEMD=y",
            "BR2_TOOLCHAIN_USES_GLIBC=y",
            "BR2_PACKAGE_RAUC=y",
            "BR2_PACKAGE_HOSTAPD=y",
            "BR2_PACKAGE_NFTABLES=y",
            "BR2_PACKAGE_CA_CERTIFICATES=y",
            "BR2_TARGET_ROOTFS_EROFS=y",
        ] {
            assert!(config.lines().any(|l| l == wanted), "{name}: no {wanted}");
        }
        checked.push(name);
    }
    checked.sort();
    assert_eq!(
        checked,
        ["cartable_rpi4_64_defconfig", "cartable_x86_64_defconfig"]
    );
}

#[test]
fn check_package_is_clean_on_the_cartable_package() {
    let dir = tempfile::tempdir().unwrap();
    let buildroot = unpack(dir.path());
    let tree = workspace_root().join("buildroot-config");
    let files: Vec<PathBuf> = std::fs::read_dir(tree.join("package/cartable"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // Debian's python3 (check-package imports python3-magic and flake8).
    let out = Command::new("/usr/bin/python3")
        .arg(buildroot.join("utils/check-package"))
        .arg("--br2-external")
        .args(&files)
        .current_dir(&buildroot)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.lines().any(|l| l == "0 warnings generated"), "{text}");
    let processed = text
        .lines()
        .find_map(|l| l.strip_suffix(" lines processed"))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(processed.is_some_and(|n| n > 0), "{text}");
}
