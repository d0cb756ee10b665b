//! The module layering of design.md, checked on the source: dependencies
//! point down only. `config` is at the bottom and imports no other module
//! of the crate (no role, not the store); the roles `server`, `gate` and
//! `client` do not import each other; only the admin pages, the sidecar
//! assembly and the command line import `admin`; the shared layers below
//! the roles (`web`, `proxy`, `ops`, `store`) import no role.
//! A use of a module through a path (`crate::server::x()`) counts as an
//! import as much as a `use` line; comments do not.

use std::path::{Path, PathBuf};

/// The roles and the admin pages, as `crate::` paths name them, and the
/// modules `config` may not import either.
const ROLES: [&str; 7] = ["server", "gate", "client", "admin", "store", "web", "proxy"];

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The top module a file of `src/` belongs to: `src/gate/rules.rs` and
/// `src/gate.rs` are `gate`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The modules among `ROLES` that a file names through `crate::`, outside
/// comments, with the line they are named on.
fn roles_named(text: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for role in ROLES {
            let needle = format!("crate::{role}");
            let mut rest = code;
            while let Some(i) = rest.find(&needle) {
                let after = rest[i + needle.len()..].chars().next();
                if !after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    out.push((n + 1, role));
                    break;
                }
                rest = &rest[i + needle.len()..];
            }
        }
    }
    out
}

/// May a file of module `from` name the role `to`?
fn allowed(from: &str, to: &str) -> bool {
    if from == to {
        return true;
    }
    // Only `config` is below the store, the pages and the proxy.
    if matches!(to, "store" | "web" | "proxy") {
        return from != "config";
    }
    match from {
        // The assembly and the command line stand above everything, and so
        // do the property tests (compiled for tests only), which reach every
        // parser.
        "lib" | "main" | "sidecar" | "dispatch" | "cli" | "proptests" => true,
        // The admin pages stand above the roles they administer.
        "admin" => true,
        // A role imports no other role, and nothing below imports a role.
        _ => false,
    }
}

#[test]
fn dependencies_point_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for file in sources(&src) {
        let from = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, to) in roles_named(&text) {
            if !allowed(&from, to) {
                wrong.push(format!("{}:{line}: `{from}` imports `{to}`", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering of design.md:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_imports_and_paths_but_not_comments() {
    let text = "use crate::server::keys;\n// crate::gate is documented here\nlet x = crate::client::now();\nuse crate::serverless;\n";
    assert_eq!(roles_named(text), vec![(1, "server"), (3, "client")]);
    assert!(!allowed("config", "gate"));
    assert!(!allowed("config", "store"));
    assert!(allowed("gate", "store"));
    assert!(!allowed("client", "server"));
    assert!(!allowed("web", "admin"));
    assert!(allowed("admin", "server"));
    assert!(allowed("sidecar", "admin"));
}
