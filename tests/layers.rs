//! The shape of the code, checked: which modules may reach the store and
//! the cache, that the modules form no cycle, and that the API's error
//! table (docs/api.md) is the API's list of error codes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
