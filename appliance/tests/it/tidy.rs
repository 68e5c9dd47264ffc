//! The rules of the house, checked: a test fails when code breaks one (as
//! rust-analyzer's `tidy` does). ARCHITECTURE.md says why each rule exists.
//!
//! - A service (`dns`, `cache`, `hub`, `sync`, `net`, `web`) imports no other
//!   service: only `app.rs` wires them, through handles.
//! - The ground floor (`base`) imports nothing of the crate but itself; `filter`
//!   imports only itself and `base`; `config` no service; `store` and `supervisor`
//!   no service.
//! - No cycle between the top-level modules of the daemon.
//! - `filter/` and `protocol/` are pure: no tokio, no socket, no system clock.
//! - Every Rust file starts with its module doc (`//!`).
//! - No production file over 700 lines of code, no function over 100 lines unless a
//!   `// Long:` comment right above it says why.
//!
//! `cargo test -p cartable --test it tidy -- --nocapture` prints the import graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SERVICES: [&str; 7] = ["dns", "cache", "hub", "sync", "net", "web", "update"];
const MAX_CODE_LINES: usize = 700;
const MAX_FN_LINES: usize = 100;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file of `appliance/src` belongs to (`dns` for
/// `dns/engine.rs`, `app` for `app.rs`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without comments, string contents left in (good enough: no
/// string of ours spells a module path).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
}

/// The crate's top-level modules a file refers to: `crate::x` anywhere, and each name
/// of `use crate::{x, y::z}`.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code_lines(text) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for part in inner.split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
            rest = after;
        }
    }
    out
}

/// Top-level module -> the top-level modules its files refer to.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("appliance/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let refs = references(&text);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != module));
    }
    graph
}

#[test]
fn tidy_no_service_imports_another() {
    let graph = import_graph();
    let mut broken = Vec::new();
    for (module, deps) in &graph {
        let allowed: &dyn Fn(&str) -> bool = match module.as_str() {
            m if SERVICES.contains(&m) => &|d| !SERVICES.contains(&d),
            "base" => &|_| false,
            "filter" => &|d| d == "base",
            "config" | "store" | "supervisor" => &|d| !SERVICES.contains(&d) && d != "app",
            _ => &|_| true,
        };
        for d in deps {
            if !allowed(d) {
                broken.push(format!("{module} imports {d}"));
            }
        }
    }
    println!("import graph (top-level modules of appliance/src):");
    for (module, deps) in &graph {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("  {module:<14} -> {}", deps.join(", "));
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn tidy_no_cycle_between_modules() {
    let graph = import_graph();
    // Depth-first search with colours; a grey node met again closes a cycle.
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(cycle) = visit(n, &graph, &mut state, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn tidy_filter_and_protocol_are_pure() {
    let forbidden = [
        "tokio",
        "UdpSocket",
        "TcpStream",
        "TcpListener",
        "SystemTime::now",
        "Instant::now",
        "Timestamp::now",
        "Zoned::now",
    ];
    // `filter/load.rs` is the filter's one door to the disk, and says so: it unpacks
    // archives, keeps the compiled index in `index.bin`, and times the compile. The
    // rest of `filter/` decides from what it is handed.
    let shell = root().join("appliance/src/filter/load.rs");
    let mut broken = Vec::new();
    for dir in ["appliance/src/filter", "protocol/src"] {
        for file in rust_files(&root().join(dir))
            .into_iter()
            .filter(|f| *f != shell)
        {
            let text = std::fs::read_to_string(&file).unwrap();
            // Tests may read the clock; the code they test may not.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for line in code_lines(code) {
                if let Some(word) = forbidden.iter().find(|w| line.contains(*w)) {
                    broken.push(format!("{}: uses {word}: {line}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "impure:\n{}", broken.join("\n"));
}

#[test]
fn tidy_every_file_has_its_module_doc() {
    let mut missing = Vec::new();
    for dir in [
        "appliance/src",
        "appliance/tests",
        "protocol/src",
        "central/src",
        "agent/src",
        "sys/src",
        "tests/src",
        "tests/tests",
    ] {
        for file in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "no module doc:\n{}", missing.join("\n"));
}

/// Every production file with its code: the text before its test module.
fn production_code() -> Vec<(PathBuf, String)> {
    let dirs = [
        "appliance/src",
        "protocol/src",
        "central/src",
        "agent/src",
        "sys/src",
    ];
    let mut out = Vec::new();
    for dir in dirs {
        for file in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            out.push((file, code));
        }
    }
    out
}

#[test]
fn tidy_no_production_file_is_too_long() {
    let mut long = Vec::new();
    for (file, code) in production_code() {
        let n = code_lines(&code).count();
        if n > MAX_CODE_LINES {
            long.push(format!("{}: {n} lines of code", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_CODE_LINES} lines of code:\n{}",
        long.join("\n")
    );
}

/// `fn` lines (any visibility, async or not) and where their body ends: the first
/// later line that is the same indentation and a lone `}` (rustfmt's layout).
fn long_functions(code: &str) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let rest = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let rest = rest.strip_prefix("async ").unwrap_or(rest);
        if !rest.starts_with("fn ") {
            continue;
        }
        let indent = &line[..line.len() - t.len()];
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            let n = end + 2;
            if n > MAX_FN_LINES {
                let reasoned = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| {
                        l.trim_start().starts_with("//") || l.trim_start().starts_with("#[")
                    })
                    .any(|l| l.trim_start().starts_with("// Long:"));
                if !reasoned {
                    out.push((i + 1, n, t.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn tidy_long_functions_say_why() {
    let mut long = Vec::new();
    for (file, code) in production_code() {
        for (line, n, head) in long_functions(&code) {
            long.push(format!("{}:{line}: {n} lines: {head}", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_FN_LINES} lines with no `// Long:` reason above:\n{}",
        long.join("\n")
    );
}
