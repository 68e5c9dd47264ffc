//! The firmware's own pieces, each checked by the real tool that reads it: every shell
//! script parses (`sh -n`, or `bash -n` for the bash ones), GRUB reads the boot state we write (`grub-editenv`),
//! U-Boot's tools read the Pi's environment and package its boot script, and the data
//! partition grows on a disk bigger than the image, GPT and MBR alike (`sfdisk`).

use std::path::{Path, PathBuf};
use std::process::Command;

use cartable_systests::bins::workspace_root;
use cartable_systests::tool::run_ok as run;

/// Every file under `dir` whose first line is a shell's shebang or whose name ends in
/// `.sh`.
fn shell_scripts(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            shell_scripts(&path, found);
        } else if path.extension().is_some_and(|e| e == "sh")
            || std::fs::read(&path).is_ok_and(|b| {
                [&b"#!/bin/sh"[..], b"#!/bin/bash", b"#!/usr/bin/env bash"]
                    .iter()
                    .any(|s| b.starts_with(s))
            })
        {
            found.push(path);
        }
    }
}

#[test]
fn every_shell_script_parses() {
    let root = workspace_root();
    let mut scripts = Vec::new();
    for dir in ["buildroot-config", "image", "systemd", "tests/bench", ".ci"] {
        shell_scripts(&root.join(dir), &mut scripts);
    }
    for needed in [
        "image/build-test-image",
        "image/boot-test",
        "image/update-test",
        "systemd/libexec/grow-data",
        "buildroot-config/board/common/post-build.sh",
        "buildroot-config/board/x86_64/post-image.sh",
        "buildroot-config/board/rpi4/post-image.sh",
    ] {
        assert!(scripts.contains(&root.join(needed)), "{needed} not found");
    }
    for script in &scripts {
        // Each by the shell its first line names (the benchmarks are bash scripts).
        let first = std::fs::read_to_string(script).unwrap_or_default();
        let shell = if first.starts_with("#!/usr/bin/env bash") || first.starts_with("#!/bin/bash")
        {
            "bash"
        } else {
            "sh"
        };
        let out = Command::new(shell).arg("-n").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The environment block a new x86_64 box starts with is one GRUB reads: slot A good
/// and first, slot B not installed.
#[test]
fn grub_reads_the_boot_state_a_new_box_starts_with() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("grubenv");
    let script = workspace_root().join("buildroot-config/board/x86_64/grubenv.sh");
    run(Command::new("sh").arg(&script).arg(&env));
    assert_eq!(std::fs::metadata(&env).unwrap().len(), 1024);
    let listed = run(Command::new("grub-editenv").arg(&env).arg("list"));
    let mut vars: Vec<&str> = listed.lines().collect();
    vars.sort();
    assert_eq!(
        vars,
        ["A_OK=1", "A_TRY=0", "B_OK=0", "B_TRY=0", "ORDER=A B"],
        "{listed}"
    );
    // RAUC's GRUB backend writes it with grub-editenv: it stays a valid block.
    run(Command::new("grub-editenv")
        .arg(&env)
        .args(["set", "ORDER=B A", "B_OK=1"]));
    let listed = run(Command::new("grub-editenv").arg(&env).arg("list"));
    assert!(listed.contains("ORDER=B A") && listed.contains("B_OK=1"));
}

/// The Pi's U-Boot environment, as mkenvimage makes it in post-image.sh, is what
/// fw_printenv (RAUC's U-Boot backend's tool) reads at the offset fw_env.config names;
/// the boot script packages as a U-Boot script image.
#[test]
fn u_boot_tools_read_the_pis_boot_state_and_script() {
    let board = workspace_root().join("buildroot-config/board/rpi4");
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("uboot-env.bin");
    run(Command::new("mkenvimage")
        .args(["-s", "0x10000", "-o"])
        .arg(&env)
        .arg(board.join("uboot-env.txt")));
    // The card's layout puts it at 4 MiB; fw_env.config says the same offset.
    let fw_env = std::fs::read_to_string(board.join("rootfs-overlay/etc/fw_env.config")).unwrap();
    let line = fw_env
        .lines()
        .find(|l| l.starts_with("/dev/"))
        .expect("a device line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1..], ["0x400000", "0x10000"], "{line}");
    let layout = std::fs::read_to_string(board.join("genimage.cfg")).unwrap();
    assert!(layout.contains("offset = 4M"), "{layout}");
    let card = dir.path().join("card.img");
    let mut bytes = vec![0u8; 0x400000];
    bytes.extend(std::fs::read(&env).unwrap());
    std::fs::write(&card, bytes).unwrap();
    let config = dir.path().join("fw_env.config");
    std::fs::write(&config, format!("{} 0x400000 0x10000\n", card.display())).unwrap();
    let printed = run(Command::new("fw_printenv").arg("-c").arg(&config));
    for want in ["BOOT_ORDER=A B", "BOOT_A_LEFT=3", "BOOT_B_LEFT=0"] {
        assert!(printed.lines().any(|l| l == want), "{want}: {printed}");
    }
    let script = dir.path().join("boot.scr");
    let said = run(Command::new("mkimage")
        .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none"])
        .args(["-n", "Cartable A/B boot", "-d"])
        .arg(board.join("boot.cmd"))
        .arg(&script));
    assert!(said.contains("Script"), "{said}");
}

/// A firmware image is small; the disk or card it is written to is not. The data
/// partition (the last) takes the rest, GPT and MBR alike; twice changes nothing.
#[test]
fn the_data_partition_grows_to_the_end_of_a_bigger_disk() {
    let grow = workspace_root().join("systemd/libexec/grow-data");
    for label in ["gpt", "dos"] {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let file = std::fs::File::create(&disk).unwrap();
        file.set_len(100 << 20).unwrap();
        let table = format!("label: {label}\n,10M\n,20M\n,20M\n,10M\n");
        let mut sfdisk = Command::new("sfdisk")
            .arg("--quiet")
            .arg(&disk)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        sfdisk
            .stdin
            .take()
            .unwrap()
            .write_all(table.as_bytes())
            .unwrap();
        assert!(sfdisk.wait().unwrap().success());
        // Written to a disk of 300 MiB.
        file.set_len(300 << 20).unwrap();
        // Partition n's (start, size) in sectors, as sfdisk reads the table.
        let extent = |n: usize| -> (u64, u64) {
            let dump = run(Command::new("sfdisk").arg("--dump").arg(&disk));
            let line = dump
                .lines()
                .filter(|l| l.contains(" : "))
                .nth(n - 1)
                .unwrap()
                .to_string();
            let field = |name: &str| -> u64 {
                let rest = line.split(name).nth(1).unwrap();
                rest.split(',').next().unwrap().trim().parse().unwrap()
            };
            (field("start="), field("size="))
        };
        let size_of = |n: usize| extent(n).1;
        let before = (size_of(3), size_of(4));
        run(Command::new("sh").arg(&grow).arg(&disk).arg("4"));
        let grown = size_of(4);
        assert!(grown > before.1, "{label}: {grown} sectors");
        assert_eq!(size_of(3), before.0, "{label}: only the last one grows");
        // To the disk's end, but for the GPT's backup header (33 sectors) and alignment.
        let (start, size) = extent(4);
        assert!(
            (start + size) * 512 > (300 << 20) - (1 << 20),
            "{label}: {start}+{size}"
        );
        run(Command::new("sh").arg(&grow).arg(&disk).arg("4"));
        assert_eq!(size_of(4), grown, "{label}: the second run changes nothing");
        // A partition that is not the last one has no room after it.
        run(Command::new("sh").arg(&grow).arg(&disk).arg("3"));
        assert_eq!(size_of(3), before.0);
        let listed = run(Command::new("sfdisk").arg("--verify").arg(&disk));
        assert!(listed.contains("No errors detected."), "{label}: {listed}");
    }
}
