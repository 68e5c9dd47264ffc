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

/// What a tool printed, both streams.
fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn make(buildroot: &Path, args: &[&str]) {
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(buildroot)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "make {args:?}: {}", printed(&out));
}

/// One unpacked Buildroot for both of its checks (unpacking the archive is most of
/// their time).
#[test]
fn buildroot_accepts_the_defconfigs_and_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let buildroot = unpack(dir.path());
    every_defconfig_survives_the_kconfig_round_trip(&buildroot, dir.path());
    check_package_is_clean_on_the_cartable_package(&buildroot);
}

fn every_defconfig_survives_the_kconfig_round_trip(buildroot: &Path, dir: &Path) {
    let tree = workspace_root().join("buildroot-config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(tree.join("configs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let out = dir.join(&name);
        let external = format!("BR2_EXTERNAL={}", tree.display());
        make(
            buildroot,
            &[&format!("O={}", out.display()), &external, &name],
        );
        let saved = out.join("saved");
        make(
            buildroot,
            &[
                &format!("O={}", out.display()),
                "savedefconfig",
                &format!("BR2_DEFCONFIG={}", saved.display()),
            ],
        );
        let (committed, kept) = (lines(&path), lines(&saved));
        // Kconfig keeps a path whatever it names: each file the tree points at exists.
        for line in &committed {
            for part in line.split("$(BR2_EXTERNAL_CARTABLE_PATH)/").skip(1) {
                let file = part.split(['"', ' ']).next().unwrap();
                assert!(
                    tree.join(file).exists(),
                    "{name}: {file} is not in the tree"
                );
            }
        }
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
            "BR2_TARGET_ROOTFS_SQUASHFS=y",
            "BR2_TARGET_ROOTFS_SQUASHFS4_GZIP=y",
        ] {
            assert!(config.lines().any(|l| l == wanted), "{name}: no {wanted}");
        }
        // A teenager with a keyboard on the box's console finds no root login.
        assert!(
            config
                .lines()
                .any(|l| l == "# BR2_TARGET_ENABLE_ROOT_LOGIN is not set"),
            "{name}: root can log in"
        );
        // RAUC's bootloader backend needs its tool on the box: grub-editenv on x86,
        // fw_setenv on the Pi.
        let backend_tool = if name.contains("x86_64") {
            "BR2_TARGET_GRUB2_INSTALL_TOOLS=y"
        } else {
            "BR2_PACKAGE_UBOOT_TOOLS_FWPRINTENV=y"
        };
        assert!(
            config.lines().any(|l| l == backend_tool),
            "{name}: no {backend_tool}"
        );
        checked.push(name);
    }
    checked.sort();
    assert_eq!(
        checked,
        ["cartable_rpi4_64_defconfig", "cartable_x86_64_defconfig"]
    );
}

fn check_package_is_clean_on_the_cartable_package(buildroot: &Path) {
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
        .current_dir(buildroot)
        .output()
        .unwrap();
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.lines().any(|l| l == "0 warnings generated"), "{text}");
    let processed = text
        .lines()
        .find_map(|l| l.strip_suffix(" lines processed"))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(processed.is_some_and(|n| n > 0), "{text}");
}

/// The inputs a genimage config reads: every quoted name in a `files` list or after
/// `image =`, less the images the config makes itself.
fn genimage_inputs(config: &str) -> Vec<String> {
    let made: BTreeSet<&str> = config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image ")?.strip_suffix(" {"))
        .collect();
    let mut inputs = BTreeSet::new();
    let mut in_files = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with("files = {") {
            in_files = true;
            continue;
        }
        if in_files && line == "}" {
            in_files = false;
            continue;
        }
        let quoted = line.split('"').nth(1);
        let wanted = if in_files {
            quoted
        } else if line.starts_with("image = ") {
            quoted.filter(|name| !made.contains(name))
        } else {
            None
        };
        inputs.extend(wanted.map(str::to_string));
    }
    inputs.into_iter().collect()
}

#[test]
fn genimage_accepts_every_board_layout() {
    let tree = workspace_root().join("buildroot-config/board");
    let mut boards = Vec::new();
    for entry in std::fs::read_dir(&tree).unwrap() {
        let board = entry.unwrap().path();
        let config = board.join("genimage.cfg");
        // (`common/` holds what every board's root shares, no layout.)
        let Ok(text) = std::fs::read_to_string(&config) else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let (input, output, root, tmp) = (
            dir.path().join("in"),
            dir.path().join("out"),
            dir.path().join("root"),
            dir.path().join("tmp"),
        );
        for d in [&input, &output, &root.join("data"), &tmp] {
            std::fs::create_dir_all(d).unwrap();
        }
        let inputs = genimage_inputs(&text);
        assert!(!inputs.is_empty(), "{}", config.display());
        for name in &inputs {
            let path = input.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            // A name with no extension in a `files` list is a folder (the Pi's overlays).
            if Path::new(name).extension().is_none() {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::write(&path, b"").unwrap();
            }
        }
        let out = Command::new("genimage")
            .arg("--config")
            .arg(&config)
            .arg("--inputpath")
            .arg(&input)
            .arg("--outputpath")
            .arg(&output)
            .arg("--rootpath")
            .arg(&root)
            .arg("--tmppath")
            .arg(&tmp)
            .env(
                "PATH",
                format!("{}:/usr/sbin:/sbin", std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            config.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let disk = std::fs::read_dir(&output)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .find(|n| n.ends_with(".img"));
        assert!(disk.is_some(), "{}: no disk image", config.display());
        boards.push(board.file_name().unwrap().to_string_lossy().to_string());
    }
    boards.sort();
    assert_eq!(boards, ["rpi4", "x86_64"]);
}

/// RAUC's own parser (Debian's rauc) loads each board's system.conf: a mistake there
/// ("Failed to load system config") would only show on a box, at its first update.
#[test]
fn rauc_loads_every_board_system_conf() {
    for board in ["x86_64", "rpi4"] {
        let conf = workspace_root().join(format!(
            "buildroot-config/board/{board}/rootfs-overlay/etc/rauc/system.conf"
        ));
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            text.contains(&format!("compatible=cartable-{board}\n")),
            "{board}"
        );
        assert!(text.contains("bootname=A\n") && text.contains("bootname=B\n"));
        let out = Command::new("rauc")
            .arg(format!("--conf={}", conf.display()))
            .arg("status")
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
            .output()
            .unwrap();
        let said = printed(&out);
        assert!(
            !said.contains("Failed to load system config"),
            "{board}: {said}"
        );
        // Past the configuration: it read the data directory, then looked for the
        // service (which only a booted box runs).
        assert!(said.contains("/data/rauc/central.raucs"), "{board}: {said}");
    }
}

/// The configuration the firmware ships passes `check-config`, keeps the data on
/// `/data`, and the unit's drop-in lets the daemon write exactly there (the unit
/// itself only allows its state folder: a data folder it cannot write would stop the
/// box at its first boot).
#[test]
fn the_shipped_config_keeps_its_data_where_the_unit_lets_it_write() {
    let overlay = workspace_root().join("buildroot-config/board/common/rootfs-overlay");
    let config = overlay.join("etc/cartable/cartable.toml");
    let said = cartable_systests::bins::cartable_ok([
        std::ffi::OsStr::new("check-config"),
        config.as_os_str(),
    ]);
    assert!(said.contains("ok"), "{said}");
    let text = std::fs::read_to_string(&config).unwrap();
    let data_dir = text
        .lines()
        .find_map(|l| l.strip_prefix("data_dir = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("data_dir is set");
    assert!(data_dir.starts_with("/data/"), "{data_dir}");
    let drop_in =
        std::fs::read_to_string(overlay.join("etc/systemd/system/cartable.service.d/data.conf"))
            .unwrap();
    assert!(
        drop_in
            .lines()
            .any(|l| l == format!("ReadWritePaths={data_dir}")),
        "{drop_in}"
    );
    assert!(drop_in.lines().any(|l| l == "RequiresMountsFor=/data"));
}
