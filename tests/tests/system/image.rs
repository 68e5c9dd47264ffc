//! The test image (image/build-test-image) booted under qemu (image/boot-test), twice:
//! the firmware's layout boots into a serving box with no network, from a read-only
//! slot, marks its slot good, grows and keeps `/data` (the box's key, and a class an
//! admin imported from the LAN), and shuts down cleanly.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use cartable_systests::bins::{release_cartable, workspace_root};
use cartable_systests::tool::run_ok as run;

/// What `image/boot-test` found, by key; `while_up` runs while the box is up.
fn boot(disk: &Path, serial: &Path, while_up: &str) -> HashMap<String, String> {
    let out = Command::new(workspace_root().join("image/boot-test"))
        .arg(disk)
        .arg(serial)
        .env("WHILE_UP", while_up)
        .output()
        .expect("image/boot-test runs");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the box printed on its serial console (firmware's bytes are not all UTF-8).
fn serial_console(serial: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).into_owned()
}

/// GRUB's environment on the disk's EFI system partition (at 1 MiB), as GRUB reads it.
fn grubenv(disk: &Path, dir: &Path) -> String {
    let env = dir.join("grubenv");
    let _ = std::fs::remove_file(&env);
    run(Command::new("mcopy")
        .arg("-i")
        .arg(format!("{}@@1M", disk.display()))
        .arg("::EFI/BOOT/grubenv")
        .arg(&env));
    run(Command::new("grub-editenv").arg(&env).arg("list"))
}

const ADMIN: &str = "it-admin";
const PASSWORD: &str = "craie-verte-42";

/// A shell script an IT admin's laptop runs against the box (curl, the box's HTTP
/// port in HTTP_PORT): sign in, import `csv` if given, then save the school's
/// overview to `out`.
fn admin_script(dir: &Path, csv: Option<&str>, out: &Path) -> String {
    let import = match csv {
        Some(csv) => {
            let file = dir.join("import.csv");
            std::fs::write(&file, csv).unwrap();
            format!(
                "curl -sf -b \"$jar\" -H \"x-csrf-token: $csrf\" -H 'content-type: text/csv' \
                 --data-binary @{} \"$base/api/v1/admin/import\" >/dev/null\n",
                file.display()
            )
        }
        None => String::new(),
    };
    format!(
        "set -eu\nbase=http://127.0.0.1:$HTTP_PORT\njar={jar}\n\
         csrf=$(curl -sf -c \"$jar\" -H 'content-type: application/json' \
         -d '{{\"login\":\"{ADMIN}\",\"password\":\"{PASSWORD}\"}}' \"$base/api/v1/login\" \
         | sed -n 's/.*\"csrf\":\"\\([^\"]*\\)\".*/\\1/p')\n\
         test -n \"$csrf\"\n{import}\
         curl -sf -b \"$jar\" \"$base/api/v1/admin/school\" >{out}\n",
        jar = dir.join("cookies").display(),
        out = out.display(),
    )
}

#[test]
fn the_test_image_boots_into_a_serving_box_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    // Provisioned with a first admin account, as a technician would before delivery.
    let password = dir.path().join("admin-password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    run(
        Command::new(workspace_root().join("image/build-test-image"))
            .arg(&images)
            .env("CARTABLE_BIN", release_cartable())
            .env("CARTABLE_ADMIN", ADMIN)
            .env("CARTABLE_ADMIN_PASSWORD_FILE", &password),
    );

    // Two versions, the layout RAUC's system.conf names, slot B empty.
    let versions: Vec<String> = ["1", "2"]
        .iter()
        .map(|v| std::fs::read_to_string(images.join(v).join("version")).unwrap())
        .collect();
    assert_ne!(versions[0], versions[1]);
    let disk = images.join("1/disk.img");
    let table = run(Command::new("sfdisk").arg("--dump").arg(&disk));
    for name in ["efi", "rootfs-a", "rootfs-b", "data"] {
        assert!(table.contains(&format!("name=\"{name}\"")), "{table}");
    }
    assert!(table.contains("label: gpt"), "{table}");
    let env = grubenv(&disk, dir.path());
    assert!(env.contains("A_OK=1") && env.contains("B_OK=0"), "{env}");

    // Written to a disk 512 MiB bigger than the image, as a technician does.
    let work = dir.path().join("box.img");
    std::fs::copy(&disk, &work).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&work).unwrap();
    let image_size = file.metadata().unwrap().len();
    file.set_len(image_size + (512 << 20)).unwrap();
    drop(file);

    // Boot 1: the admin signs in from the LAN and imports a class.
    let school_1 = dir.path().join("school-1.json");
    let csv = "class;level\nCE2-B;CE2\n";
    let script = admin_script(dir.path(), Some(csv), &school_1);
    let serial = dir.path().join("serial-1.log");
    let first = boot(&work, &serial, &script);
    let console = serial_console(&serial);
    let get = |m: &HashMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    assert!(!get(&first, "dns_ms").is_empty(), "{first:?}");
    let healthz = get(&first, "healthz");
    // Serving; degraded only because a new box has no block lists yet.
    assert!(
        healthz.starts_with("200") || healthz.starts_with("503 degraded: filter:"),
        "{healthz}"
    );
    assert_eq!(get(&first, "ready"), "yes", "{console}");
    assert!(
        get(&first, "root").split(',').any(|o| o == "ro"),
        "{first:?}"
    );
    assert!(get(&first, "data").starts_with("rw"), "{first:?}");
    assert_eq!(get(&first, "rauc_booted"), "A", "{first:?}");
    assert_eq!(get(&first, "halted"), "yes", "{console}");
    assert_eq!(get(&first, "while_up"), "ok", "{first:?}");
    let school = std::fs::read_to_string(&school_1).unwrap();
    assert!(school.contains("CE2-B"), "{school}");
    let box_id = get(&first, "box_id");
    assert!(box_id.starts_with("box-"), "{first:?}");
    // /data took the disk's new room (64 MiB in the image).
    let data_bytes: u64 = get(&first, "data_bytes").parse().unwrap();
    assert!(data_bytes > 500 << 20, "{data_bytes}");
    // The daemon served before the boot was over.
    let (cartable_ms, multi_user_ms): (u64, u64) = (
        get(&first, "cartable_ms").parse().unwrap(),
        get(&first, "multi_user_ms").parse().unwrap(),
    );
    assert!(cartable_ms <= multi_user_ms, "{first:?}");
    // The slot that came up was marked good: GRUB will boot it again.
    let env = grubenv(&work, dir.path());
    assert!(env.contains("A_OK=1") && env.contains("A_TRY=0"), "{env}");

    // The second boot of the same disk finds what the first stored on /data: the
    // box's key (so its name) and the class in the store.
    let school_2 = dir.path().join("school-2.json");
    let script = admin_script(dir.path(), None, &school_2);
    let serial = dir.path().join("serial-2.log");
    let second = boot(&work, &serial, &script);
    let console = serial_console(&serial);
    assert_eq!(get(&second, "box_id"), box_id, "{second:?}");
    assert_eq!(get(&second, "data_bytes"), get(&first, "data_bytes"));
    assert_eq!(get(&second, "rauc_booted"), "A");
    assert_eq!(get(&second, "halted"), "yes", "{console}");
    assert!(console.contains("Started cartable.service"), "{console}");
    assert_eq!(get(&second, "while_up"), "ok", "{second:?}");
    let school = std::fs::read_to_string(&school_2).unwrap();
    assert!(school.contains("CE2-B"), "the class is gone: {school}");
}
