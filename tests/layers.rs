//! The shape of the code, checked: which modules may reach the store and
//! the cache, that the modules form no cycle, and that the API's error
//! table (docs/api.md) is the API's list of error codes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use strum::IntoEnumIterator;
use tally::http::ErrorCode;

/// Every top-level module of the library and the top-level modules its
/// files name through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![root.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = path.strip_prefix(&root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for named in crate_paths(&text) {
            if named != module {
                uses.insert(named);
            }
        }
    }
    graph
}

/// The first segment of every `crate::` path in a file, grouped imports
/// (`crate::{a, b::c}`) included.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap()];
            for part in group.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found
}

#[test]
fn only_the_counter_and_start_up_reach_the_store_and_the_cache() {
    let graph = module_graph();
    // The counter is the way in; the server builds both at start; the
    // store and the cache are one another's strangers.
    let allowed: BTreeMap<&str, &[&str]> = [
        ("store", &["counting", "server"][..]),
        ("cache", &["counting", "server"][..]),
    ]
    .into_iter()
    .collect();
    for (module, uses) in &graph {
        for (reached, may) in &allowed {
            if uses.contains(*reached) {
                assert!(
                    may.contains(&module.as_str()),
                    "{module} names crate::{reached}; only {may:?} may"
                );
            }
        }
    }
    // The check sees what it checks.
    assert!(graph["counting"].contains("store") && graph["counting"].contains("cache"));
    assert!(graph["server"].contains("store") && graph["server"].contains("cache"));
    assert!(graph["http"].contains("counting") && graph["http"].contains("domain"));
}

#[test]
fn the_modules_form_no_cycle() {
    let graph = module_graph();
    // Depth-first: a module met again while it is still being walked
    // closes a cycle.
    fn walk<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = path.iter().position(|m| *m == module) {
            panic!("cycle: {} -> {module}", path[at..].join(" -> "));
        }
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            walk(next, graph, path, done);
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        walk(module, &graph, &mut Vec::new(), &mut done);
    }
    assert_eq!(done.len(), graph.len());
    assert!(graph["domain"].is_empty(), "{:?}", graph["domain"]);
}

#[test]
fn the_api_docs_error_table_is_the_list_of_error_codes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")).unwrap();
    let table = readme
        .split("| Status | Codes | When |")
        .nth(1)
        .expect("docs/api.md has an error table");
    let mut documented = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let status: u16 = cells[1].parse().expect("a status");
        for code in cells[2].split(',') {
            documented.insert((status, code.trim().trim_matches('`').to_owned()));
        }
    }
    // A 500 is said in a sentence of its own, below the table.
    assert!(readme.contains("A 500 (`internal`)"));
    documented.insert((500, "internal".to_owned()));
    let answered: BTreeSet<(u16, String)> = ErrorCode::iter()
        .map(|c| (c.status().as_u16(), c.as_str().to_owned()))
        .collect();
    assert_eq!(documented, answered);
}

/// A module's path from the crate root, from its file's path under `src/`
/// (`http/dashboard/mod.rs` and `http/dashboard.rs` are both
/// `http::dashboard`; `lib.rs` is the root).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_str().unwrap().to_owned())
        .collect();
    let file = parts.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_owned());
    }
    parts
}

/// Every path a file names through `crate::`, `super::` or `self::`, made
/// absolute, outside its tests; a group (`super::{a, b::c}`) gives one path
/// per member, with its first segment.
fn named_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let text = text.split("#[cfg(test)]").next().unwrap();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in text.match_indices(start) {
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':')
            {
                continue;
            }
            let mut base: Vec<String> = match start {
                "crate::" => Vec::new(),
                "self::" => module.to_vec(),
                _ => module[..module.len().saturating_sub(1)].to_vec(),
            };
            let mut rest = &text[at + start.len()..];
            while let Some(more) = rest.strip_prefix("super::") {
                base.pop();
                rest = more;
            }
            loop {
                if let Some(group) = rest.strip_prefix('{') {
                    for part in group[..group.find('}').unwrap()].split(',') {
                        let name = ident(part.trim());
                        if !name.is_empty() {
                            let mut path = base.clone();
                            path.push(name);
                            found.push(path);
                        }
                    }
                    break;
                }
                let name = ident(rest);
                if name.is_empty() {
                    found.push(base);
                    break;
                }
                base.push(name.clone());
                match rest[name.len()..].strip_prefix("::") {
                    Some(more) => rest = more,
                    None => {
                        found.push(base);
                        break;
                    }
                }
            }
        }
    }
    found
}

/// For every module with submodules: which of its submodules name which
/// others (a file counts for the submodule it is in, at any depth).
fn submodule_graphs() -> BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let modules: Vec<(PathBuf, Vec<String>)> = files
        .into_iter()
        .filter(|p| !p.ends_with("main.rs"))
        .map(|p| {
            let module = module_path(p.strip_prefix(&root).unwrap());
            (p, module)
        })
        .collect();
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (_, module) in &modules {
        for depth in 0..module.len() {
            graphs
                .entry(module[..depth].to_vec())
                .or_default()
                .entry(module[depth].clone())
                .or_default();
        }
    }
    for (path, module) in &modules {
        let text = std::fs::read_to_string(path).unwrap();
        for named in named_paths(&text, module) {
            for depth in 0..module.len() {
                let parent = &module[..depth];
                let graph = graphs.get_mut(parent).unwrap();
                let (Some(from), Some(to)) = (module.get(depth), named.get(depth)) else {
                    continue;
                };
                if named[..depth] == *parent && from != to && graph.contains_key(to) {
                    graph.get_mut(from).unwrap().insert(to.clone());
                }
            }
        }
    }
    graphs
}

/// A cycle in a graph, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn walk(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if done.contains(node) {
            return None;
        }
        if let Some(at) = path.iter().position(|m| m == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = walk(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| walk(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_files_of_a_module_form_no_cycle() {
    let graphs = submodule_graphs();
    let cycles: Vec<String> = graphs
        .iter()
        .filter_map(|(parent, graph)| {
            cycle(graph).map(|c| format!("in {}: {}", parent.join("::"), c.join(" -> ")))
        })
        .collect();
    assert!(cycles.is_empty(), "{}", cycles.join("\n"));
    // The check sees what it checks: the top level, and files in a module.
    assert!(graphs[&Vec::new()]["http"].contains("counting"));
    let http = &graphs[&vec!["http".to_owned()]];
    assert!(http["api"].contains("extract") && http["dashboard"].contains("extract"));
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        cycle(&graph),
        Some(
            vec!["a", "b", "c", "a"]
                .into_iter()
                .map(str::to_owned)
                .collect()
        )
    );
    let mut open = graph.clone();
    open.get_mut("c").unwrap().clear();
    assert_eq!(cycle(&open), None);
    let module = vec!["http".to_owned(), "pages".to_owned()];
    assert_eq!(
        named_paths(
            "use super::{api, series::Format};\nuse crate::domain::Slug;\nx(super::super::store::Y)",
            &module
        ),
        vec![
            vec!["domain".to_owned(), "Slug".to_owned()],
            vec!["http".to_owned(), "api".to_owned()],
            vec!["http".to_owned(), "series".to_owned()],
            vec!["store".to_owned(), "Y".to_owned()],
        ]
    );
}
