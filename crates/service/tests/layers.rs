//! The architecture, checked from the code (docs/architecture.md):
//! - each crate depends only on crates of the layers below it (edge -> service -> domain and
//!   storage);
//! - the service builds without the HTTP stack and the web UI (no axum, askama, utoipa, tower
//!   or hyper anywhere in its dependency tree);
//! - inside each crate, imports may go round in a circle only among files of one folder: a
//!   circle that crosses folders means a folder that cannot be understood without the other.

// Test code: a failed expectation should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every crate of the workspace: its package name and folder.
fn crates() -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![workspace().join("crates")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let manifest = path.join("Cargo.toml");
            if manifest.is_file() {
                let text = std::fs::read_to_string(&manifest).unwrap();
                let table: toml::Table = text.parse().unwrap();
                let name = table["package"]["name"].as_str().unwrap().to_string();
                found.insert(name, path);
            } else if path.is_dir() {
                folders.push(path);
            }
        }
    }
    found
}

/// The layer of each crate: a crate may depend on crates of lower layers only.
fn layer(name: &str) -> u32 {
    match name {
        "jitgate-core" => 0,
        "jitgate-policy" | "jitgate-store" => 1,
        "jitgate-service" => 2,
        "jitgate-connectors" => 3,
        "jitgate-server" => 4,
        "jitgate" => 5,
        other => panic!("crate {other} has no layer: give it one here and in docs/architecture.md"),
    }
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let crates = crates();
    assert!(crates.contains_key("jitgate-service"), "{crates:?}");
    for (name, folder) in &crates {
        let table: toml::Table = std::fs::read_to_string(folder.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let Some(deps) = table.get("dependencies").and_then(|d| d.as_table()) else {
            continue;
        };
        for dep in deps.keys().filter(|d| crates.contains_key(*d)) {
            assert!(
                layer(dep) < layer(name),
                "{name} depends on {dep}, which is not in a lower layer (docs/architecture.md)"
            );
        }
    }
}

#[test]
fn the_service_builds_without_the_http_stack() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            "jitgate-service",
        ])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    let packages: BTreeSet<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(packages.contains("jitgate-core"), "{tree}");
    for http_stack in ["axum", "askama", "utoipa", "tower", "tower-http", "hyper", "reqwest"] {
        assert!(
            !packages.contains(http_stack),
            "jitgate-service depends on {http_stack} (cargo tree -p jitgate-service -e normal -i {http_stack})"
        );
    }
}

/// One source file: the module path it defines (`audit::sinks`) and its folder.
struct Module {
    path: Vec<String>,
    file: PathBuf,
}

fn modules(src: &Path) -> Vec<Module> {
    let mut found = Vec::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let file = entry.unwrap().path();
            if file.is_dir() {
                folders.push(file);
                continue;
            }
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = file.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(path.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                path.pop();
            }
            found.push(Module { path, file });
        }
    }
    found
}

/// The module paths a file names through `crate::...` (in `use` lines and in code), with
/// `use crate::{a, b::c}` groups opened up. Comments are left out.
fn named_paths(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `jitgate_crate::` and the like
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                paths.push(path_of(item.trim()));
            }
        } else {
            paths.push(path_of(rest));
        }
    }
    // A module brought in by name (`use crate::{providers, notify};`) is then used without
    // `crate::` (`providers::webhook::build`): follow those paths too.
    let imported: BTreeSet<String> = paths.iter().filter(|p| p.len() == 1).map(|p| p[0].clone()).collect();
    for name in imported {
        let needle = format!("{name}::");
        let mut rest = code.as_str();
        while let Some(at) = rest.find(&needle) {
            let before = rest[..at].chars().last();
            let after = &rest[at..];
            rest = &rest[at + needle.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // part of a longer path (`crate::name::`, `other_name::`)
            }
            paths.push(path_of(after));
        }
    }
    paths
}

fn path_of(text: &str) -> Vec<String> {
    let mut path = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        path.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    path
}

/// Tarjan's strongly connected components of a graph on `0..n`.
fn components(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in s.edges[v].iter() {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.found.push(component);
        }
    }
    let n = edges.len();
    let mut state = State {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if state.index[v].is_none() {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn no_import_circle_crosses_folders() {
    let mut circles = Vec::new();
    for (name, folder) in crates() {
        let src = folder.join("src");
        let modules = modules(&src);
        let by_path: BTreeMap<&[String], usize> = modules
            .iter()
            .enumerate()
            .map(|(i, m)| (m.path.as_slice(), i))
            .collect();
        let mut edges = vec![BTreeSet::new(); modules.len()];
        for (i, module) in modules.iter().enumerate() {
            let text = std::fs::read_to_string(&module.file).unwrap();
            for named in named_paths(&text) {
                // The longest prefix that is a module of this crate is what is imported.
                let target = (1..=named.len()).rev().find_map(|len| by_path.get(&named[..len]));
                if let Some(&j) = target {
                    if j != i {
                        edges[i].insert(j);
                    }
                }
            }
        }
        for component in components(&edges) {
            let folders: BTreeSet<&Path> = component.iter().map(|&i| modules[i].file.parent().unwrap()).collect();
            if folders.len() > 1 {
                let files: Vec<String> = component
                    .iter()
                    .map(|&i| modules[i].file.strip_prefix(&src).unwrap().display().to_string())
                    .collect();
                circles.push(format!("{name}: {}", files.join(" <-> ")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "imports that go round in a circle across folders:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_import_reader_sees_groups_and_skips_comments() {
    let text =
        "use crate::{app::App, auth};\n// crate::ui::x\nlet x = crate::metrics::Format::Json;\nuse jitgate_crate::y;";
    assert_eq!(
        named_paths(text),
        vec![
            vec!["app".to_string(), "App".to_string()],
            vec!["auth".to_string()],
            vec!["metrics".to_string(), "Format".to_string(), "Json".to_string()],
        ]
    );
    // A module imported by name and used without `crate::` is followed.
    let text = "use crate::{providers, notify};\nfn f() { providers::webhook::build(); x_providers::y(); }";
    assert_eq!(
        named_paths(text),
        vec![
            vec!["providers".to_string()],
            vec!["notify".to_string()],
            vec!["providers".to_string(), "webhook".to_string(), "build".to_string()],
        ]
    );
}
