//! Releases are real: every line of `RELEASES` names a commit of this
//! repository whose `Cargo.toml` carries that version and whose PostgreSQL
//! migrations end at that schema, each release has its `CHANGELOG.md`
//! entry, and this tree's version comes after the last release, with an
//! entry of its own.

use std::process::Command;

#[derive(Debug)]
struct Release {
    version: String,
    commit: String,
    schema: usize,
}

fn releases() -> Vec<Release> {
    include_str!("../RELEASES")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [version, commit, schema] = fields[..] else {
                panic!("RELEASES: not `version commit schema=N`: {line:?}");
            };
            let schema = schema
                .strip_prefix("schema=")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("RELEASES: no schema=N in {line:?}"));
            Release {
                version: version.to_owned(),
                commit: commit.to_owned(),
                schema,
            }
        })
        .collect()
}

/// `major.minor.patch` as numbers, for ordering.
fn semver(version: &str) -> (u64, u64, u64) {
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("not a version: {version}"))
        })
        .collect();
    let [major, minor, patch] = parts[..] else {
        panic!("not major.minor.patch: {version}");
    };
    (major, minor, patch)
}

fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {} (the tests need a clone with full history)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `## ` headings of CHANGELOG.md, in order.
fn changelog_headings() -> Vec<&'static str> {
    include_str!("../CHANGELOG.md")
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .collect()
}

#[test]
fn every_release_is_a_commit_with_its_version_and_schema() {
    let releases = releases();
    assert!(!releases.is_empty());
    for release in &releases {
        assert_eq!(release.commit.len(), 40, "{release:?}");
        let manifest = git(&["show", &format!("{}:Cargo.toml", release.commit)]);
        let version = manifest
            .lines()
            .find_map(|l| l.strip_prefix("version = "))
            .map(|v| v.trim_matches('"'));
        assert_eq!(version, Some(release.version.as_str()), "{release:?}");
        let migrations = git(&[
            "ls-tree",
            "--name-only",
            &release.commit,
            "migrations/postgres/",
        ]);
        assert_eq!(
            migrations.lines().filter(|f| f.ends_with(".sql")).count(),
            release.schema,
            "{release:?}"
        );
        // A release is built from a commit on this tree's history.
        let merged = Command::new("git")
            .args(["merge-base", "--is-ancestor", &release.commit, "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(merged.success(), "{release:?} is not an ancestor of HEAD");
    }
}

#[test]
fn releases_rise_and_this_tree_comes_after_the_last() {
    let releases = releases();
    let versions: Vec<(u64, u64, u64)> = releases.iter().map(|r| semver(&r.version)).collect();
    for pair in versions.windows(2) {
        assert!(pair[0] < pair[1], "RELEASES out of order: {versions:?}");
    }
    let schemas: Vec<usize> = releases.iter().map(|r| r.schema).collect();
    assert!(schemas.is_sorted(), "{schemas:?}");
    assert!(semver(env!("CARGO_PKG_VERSION")) > *versions.last().unwrap());
}

#[test]
fn the_changelog_has_an_entry_per_release_newest_first() {
    let mut expected = vec![format!("{} (unreleased)", env!("CARGO_PKG_VERSION"))];
    expected.extend(releases().iter().rev().map(|r| r.version.clone()));
    assert_eq!(changelog_headings(), expected);
}

#[test]
fn the_image_is_labelled_with_this_version() {
    let dockerfile = include_str!("../Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l == format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"))),
        "the Dockerfile's ARG VERSION is not {}",
        env!("CARGO_PKG_VERSION")
    );
}
