//! Finds the workspace's binaries for black-box tests, building them when missing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

/// The target folder this test binary was built into (`target/debug`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps folder");
    deps.parent().expect("target folder").to_path_buf()
}

static BUILD: Once = Once::new();

/// Path of the workspace binary `name`; builds the workspace's binaries once if absent.
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    if !path.exists() {
        BUILD.call_once(|| cargo_build(&["--workspace", "--bins"]));
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The release build of the daemon (what the firmware carries), built if absent
/// (`tests/run` builds it before the tests).
pub fn release_cartable() -> PathBuf {
    let path = target_dir()
        .parent()
        .expect("target root")
        .join("release/cartable");
    if !path.exists() {
        cargo_build(&["--release", "-p", "cartable", "--bin", "cartable"]);
    }
    path
}

/// `cargo build ARGS`, which must succeed.
fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .args(args)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs `cartable ARGS`, which must succeed; its standard output.
pub fn cartable_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(bin("cartable"))
        .args(args)
        .output()
        .expect("cartable runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
