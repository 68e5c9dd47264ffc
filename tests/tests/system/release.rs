//! The release tarball (image/release-tarball) is what Buildroot's cartable package
//! can build from with no network: it holds VENDOR/ (so Buildroot's download step
//! keeps it as is), cargo builds it --offline --locked with an empty cargo home, its
//! hash line passes Buildroot's own check-hash, and the same commit gives the same
//! bytes.

use std::path::Path;
use std::process::Command;

use cartable_systests::bins::workspace_root;
use cartable_systests::tool::run_ok as run;

fn release(out: &Path) -> (std::path::PathBuf, String) {
    let said = run(Command::new(workspace_root().join("image/release-tarball")).arg(out));
    let tarball = std::path::PathBuf::from(said.lines().last().unwrap().trim());
    let hash = std::fs::read_to_string(out.join("cartable.hash")).unwrap();
    (tarball, hash)
}

#[test]
fn the_release_tarball_builds_offline_and_passes_buildroots_hash_check() {
    let dir = tempfile::tempdir().unwrap();
    let (tarball, hash) = release(&dir.path().join("one"));
    let name = tarball.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("cartable-") && name.ends_with(".tar.gz"),
        "{name}"
    );
    let top = name.trim_end_matches(".tar.gz").to_string();

    // Buildroot's cargo-post-process keeps a tarball whose listing matches
    // "^[^/]*/VENDOR": the same test, on the same listing.
    let listing = run(Command::new("tar").arg("tzf").arg(&tarball));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(&format!("{top}/VENDOR/"))),
        "no VENDOR/"
    );
    assert!(
        listing
            .lines()
            .any(|l| l == format!("{top}/.cargo/config.toml"))
    );
    assert!(listing.lines().any(|l| l == format!("{top}/Cargo.lock")));
    assert!(
        !listing.contains("/buildroot-config/"),
        "the tarball must not hold the hash of itself"
    );

    // The hash line, through Buildroot's own check (a damaged download fails it).
    let buildroot = dir.path().join("br");
    std::fs::create_dir_all(&buildroot).unwrap();
    run(Command::new("tar")
        .arg("-xJf")
        .arg(workspace_root().join("../shared/vendor/buildroot-2025.02.16.tar.xz"))
        .arg("-C")
        .arg(&buildroot)
        .arg("buildroot-2025.02.16/support/download/check-hash"));
    let check = buildroot.join("buildroot-2025.02.16/support/download/check-hash");
    let hash_file = dir.path().join("one/cartable.hash");
    run(Command::new("bash")
        .arg(&check)
        .arg(&tarball)
        .arg(&name)
        .arg(&hash_file));
    let damaged = dir.path().join("damaged.tar.gz");
    let mut bytes = std::fs::read(&tarball).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let st = Command::new("bash")
        .arg(&check)
        .arg(&damaged)
        .arg(&name)
        .arg(&hash_file)
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(2), "a damaged tarball must not pass");

    // The same commit, the same bytes.
    let (_, again) = release(&dir.path().join("two"));
    assert_eq!(
        hash.lines().last(),
        again.lines().last(),
        "not reproducible"
    );

    // Buildroot's build: --offline --locked, from the tarball alone (an empty cargo
    // home: no registry, no cache).
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["check", "--offline", "--locked", "-p", "cartable"])
        .current_dir(src.join(&top))
        .env("CARGO_HOME", dir.path().join("cargo-home"))
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .env_remove("RUSTC_WRAPPER"));
}
