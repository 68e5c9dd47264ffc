//! `cartable filter test` and `cartable filter lists` on a small configuration.

use crate::support::{run, write};

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        dir.path(),
        "jeux.txt",
        "# jeux en ligne\ngames.test\n0.0.0.0 arcade.test\n",
    );
    let config = write(
        dir.path(),
        "box.toml",
        &format!(
            r#"[appliance]
data_dir = "{data}"

[dns]
block_mode = "nxdomain"

[[filter.list]]
category = "jeux"
path = "{list}"

[[filter.policy]]
name = "cm2"
block = ["jeux"]
allow = ["ok.games.test"]
default = true
schedule = [{{ days = ["sat-sun"], policy = "maison" }}]

[[filter.policy]]
name = "maison"
safe_search = false
clients = ["10.9.0.0/16"]
"#,
            data = dir.path().join("data").display()
        ),
    );
    (dir, config)
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn explains_a_blocked_name_with_its_list_line() {
    let (_dir, config) = setup();
    let text = stdout_of(&[
        "filter",
        "test",
        "WWW.Games.Test.",
        "--config",
        &config,
        "--at",
        "2026-11-23 10:00",
    ]);
    assert!(
        text.contains("www.games.test: blocked (NXDOMAIN)"),
        "{text}"
    );
    assert!(text.contains("policy: cm2"), "{text}");
    assert!(text.contains("category `jeux`"), "{text}");
    assert!(text.contains("jeux.txt:2"), "{text}");
}

#[test]
fn explains_allow_lists_schedules_clients_and_safe_search() {
    let (_dir, config) = setup();
    let allowed = stdout_of(&[
        "filter",
        "test",
        "a.ok.games.test",
        "--config",
        &config,
        "--at",
        "2026-11-23 10:00",
    ]);
    assert!(
        allowed.contains("allowed") && allowed.contains("allow list"),
        "{allowed}"
    );
    let saturday = stdout_of(&[
        "filter",
        "test",
        "games.test",
        "--config",
        &config,
        "--at",
        "2026-11-28 10:00",
    ]);
    assert!(
        saturday.contains("allowed") && saturday.contains("policy: maison"),
        "{saturday}"
    );
    let safe = stdout_of(&[
        "filter",
        "test",
        "www.google.fr",
        "--config",
        &config,
        "--at",
        "2026-11-23 10:00",
    ]);
    assert!(safe.contains("forcesafesearch.google.com"), "{safe}");
    let home = stdout_of(&[
        "filter",
        "test",
        "www.google.fr",
        "--client",
        "10.9.1.1",
        "--config",
        &config,
    ]);
    assert!(
        home.contains("allowed") && home.contains("policy: maison"),
        "{home}"
    );
}

#[test]
fn lists_prints_categories_and_counts() {
    let (_dir, config) = setup();
    let text = stdout_of(&["filter", "lists", "--config", &config]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("jeux") && l.contains(" 2 ")),
        "{text}"
    );
}

#[test]
fn policy_mistakes_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "box.toml",
        "[[filter.policy]]\nname = \"a\"\n\n[[filter.policy]]\nname = \"a\"\nclients = [\"10.0.0.0/33\"]\n",
    );
    let out = run(&["check-config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":6: [filter.policy] clients: `10.0.0.0/33`"),
        "{stderr}"
    );
    let fixed = write(
        dir.path(),
        "box2.toml",
        "[[filter.policy]]\nname = \"a\"\n\n[[filter.policy]]\nname = \"a\"\n",
    );
    let out = run(&["check-config", &fixed]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains(":5: [[filter.policy]]: two policies are called `a`"),
        "{stderr}"
    );
}

#[test]
fn a_bad_domain_is_a_clear_error() {
    let out = run(&["filter", "test", "not a name"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a domain name"));
}

/// The UT1 snapshot ships `adult` without its list: `filter lists` says so, naming
/// the policies that block it, instead of showing a silent zero.
#[test]
fn lists_warns_of_categories_with_no_names() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("blacklists");
    for (category, domains) in [("adult", None), ("gambling", Some("casino.test\n"))] {
        std::fs::create_dir_all(tree.join(category)).unwrap();
        std::fs::write(tree.join(category).join("usage"), "black\n").unwrap();
        if let Some(d) = domains {
            std::fs::write(tree.join(category).join("domains"), d).unwrap();
        }
    }
    let config = write(
        dir.path(),
        "box.toml",
        &format!(
            "[appliance]\ndata_dir = \"{}\"\n[filter]\nut1_dir = \"{}\"\n[[filter.policy]]\nname = \"ecole\"\nblock = [\"adult\", \"gambling\"]\n",
            dir.path().join("data").display(),
            tree.display()
        ),
    );
    let out = run(&["filter", "lists", "--config", &config]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: category `adult` holds no names")
            && stderr.contains("policies ecole block it"),
        "{stderr}"
    );
    assert!(!stderr.contains("`gambling` holds no names"), "{stderr}");
}
