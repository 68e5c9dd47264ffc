//! A tool run to completion by a test (sfdisk, grub-editenv, the image scripts...).

use std::process::Command;

/// Runs `cmd`, which must succeed; what it printed, standard output then error.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}
