//! The documentation, checked: every relative link between the README and
//! `docs/` resolves (the file, and the heading an anchor names), the README
//! stays a front door, and the configuration reference in
//! `docs/configuration.md` is what `tally config --markdown` prints.
//! `TALLY_UPDATE_DOCS=1` rewrites that reference instead of failing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files a reader follows links between.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// GitHub's anchor of a heading: lower case, punctuation dropped but `-`
/// and `_`, spaces as `-`; a repeated heading gets `-1`, `-2`, ….
fn anchor(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

struct Document {
    anchors: BTreeSet<String>,
    /// Each link's target, with the line it is on.
    links: Vec<(usize, String)>,
}

fn read(path: &Path) -> Document {
    let text = std::fs::read_to_string(path).unwrap();
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut links = Vec::new();
    let mut heading: Option<String> = None;
    for (event, range) in Parser::new(&text).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let base = anchor(&heading.take().unwrap());
                let n = seen.entry(base.clone()).or_insert(0);
                anchors.insert(if *n == 0 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                });
                *n += 1;
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push((line_of(range.start), dest_url.into_string()));
            }
            _ => {}
        }
    }
    Document { anchors, links }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut read_docs: BTreeMap<PathBuf, Document> = BTreeMap::new();
    for path in documents() {
        read_docs.insert(path.canonicalize().unwrap(), read(&path));
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, doc) in &read_docs {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        for (line, target) in &doc.links {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                path.clone()
            } else {
                path.parent().unwrap().join(file)
            };
            let Ok(resolved) = resolved.canonicalize() else {
                broken.push(format!("{name}:{line}: {target}: no such file"));
                continue;
            };
            let Some(fragment) = fragment else { continue };
            let other;
            let target_doc = match read_docs.get(&resolved) {
                Some(d) => d,
                None if resolved.extension().is_some_and(|e| e == "md") => {
                    other = read(&resolved);
                    &other
                }
                None => {
                    broken.push(format!(
                        "{name}:{line}: {target}: an anchor into a file that is not Markdown"
                    ));
                    continue;
                }
            };
            if !target_doc.anchors.contains(fragment) {
                broken.push(format!(
                    "{name}:{line}: {target}: no heading with that anchor"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 50, "only {checked} relative links found");
}

#[test]
fn the_anchor_of_a_heading_is_github_s() {
    assert_eq!(anchor("The seed's walkthrough"), "the-seeds-walkthrough");
    assert_eq!(
        anchor("The stack: NGINX, three replicas, PostgreSQL, Redis"),
        "the-stack-nginx-three-replicas-postgresql-redis"
    );
    assert_eq!(anchor("TLS to `PostgreSQL`"), "tls-to-postgresql");
    assert_eq!(anchor("Scaling out: Kubernetes"), "scaling-out-kubernetes");
}

#[test]
fn the_readme_is_a_front_door_of_at_most_300_lines() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines");
    // Its two commands come first: run it, and test it.
    let run = readme.find("cargo run --release").expect("the run command");
    let test = readme.find("scripts/test").expect("the test command");
    assert!(run < test && test < 1500, "{run} {test}");
}

const BEGIN: &str = "<!-- generated by `tally config --markdown`";
const END: &str = "<!-- end of generated reference -->";

#[test]
fn the_configuration_reference_is_the_settings_own() {
    let path = root().join("docs/configuration.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let begin = text.find(BEGIN).expect("the reference's opening marker");
    let start = begin + text[begin..].find('\n').unwrap() + 1;
    let end = text.find(END).expect("the reference's closing marker");
    let generated = tally::config::reference::markdown();
    if std::env::var_os("TALLY_UPDATE_DOCS").is_some() {
        let updated = format!("{}{generated}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        &text[start..end],
        generated,
        "docs/configuration.md's reference differs from `tally config --markdown`; \
         TALLY_UPDATE_DOCS=1 cargo nextest run --test docs rewrites it"
    );
}
