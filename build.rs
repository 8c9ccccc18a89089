//! Embeds what the binary is built from, for `tally --version`: the commit
//! and, when the tree differs from it, a digest of the difference, as
//! `scripts/build-id` prints them. Where there is no git checkout (an image
//! build, a release built from `git archive`), `TALLY_BUILD_ID` says it, or
//! the binary says `unknown`.
//!
//! Also writes the crawler list that `src/bots.rs` matches user agents
//! against: the patterns of the Crawlerdex database as the `iscrawl` crate
//! publishes it (its `crawlers.min.json`), read from the package cargo
//! unpacked for this build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    crawler_list();
    println!("cargo:rerun-if-env-changed=TALLY_BUILD_ID");
    let id = match std::env::var("TALLY_BUILD_ID") {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => from_checkout().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=TALLY_BUILD_ID={id}");
}

/// `scripts/build-id` of this checkout, and the files whose change should
/// run it again: the sources, and git's record of the current commit.
fn from_checkout() -> Option<String> {
    let script = Path::new("scripts/build-id");
    if !script.exists() {
        return None;
    }
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "RELEASES",
        "src",
        "migrations",
        "static",
        "scripts/build-id",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    // HEAD names the branch; the branch's ref (or packed-refs) names the
    // commit. A path that does not exist is left out: cargo would run this
    // script again on every build.
    let head_ref = git(&["rev-parse", "--symbolic-full-name", "HEAD"]);
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(head_ref.filter(|r| r.starts_with("refs/")));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let out = Command::new("bash").arg(script).output().ok()?;
    let id = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !id.is_empty()).then_some(id)
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// `$OUT_DIR/crawlers.rs`: `CRAWLER_PATTERNS`, every pattern of the list in
/// its order, and `ISCRAWL_DIR` (for tests that compare verdicts with the
/// crate's own matcher over the crate's own user agents). Only the
/// patterns: the list's descriptions and links are not needed to tell a
/// robot. A build that cannot find the list fails: a binary that quietly
/// counted every crawler would be worse.
fn crawler_list() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let dir = iscrawl_dir();
    let file = dir.join("crawlers.min.json");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let list: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
    let patterns: Vec<&str> = list
        .as_array()
        .expect("the crawler list is an array")
        .iter()
        .map(|entry| {
            entry["pattern"]
                .as_str()
                .expect("every entry has a pattern")
        })
        .collect();
    assert!(
        patterns.len() > 1000,
        "{} holds only {} patterns",
        file.display(),
        patterns.len()
    );
    let mut out = String::from("pub const CRAWLER_PATTERNS: &[&str] = &[\n");
    for pattern in &patterns {
        out.push_str(&format!("    {pattern:?},\n"));
    }
    out.push_str("];\n");
    out.push_str(&format!(
        "#[allow(dead_code)]\npub const ISCRAWL_DIR: &str = {:?};\n",
        dir.display().to_string()
    ));
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(target.join("crawlers.rs"), out).expect("writing crawlers.rs");
}

/// The directory of the `iscrawl` package this build uses: where cargo
/// unpacked it in its registry (the version `Cargo.lock` names, under
/// `$CARGO_HOME/registry/src/`), or else where `cargo metadata` says it is
/// (offline and locked: for vendored or otherwise placed sources, when
/// every package is at hand). Not `cargo metadata` first: it wants every
/// package of the lock file unpacked, dev-dependencies too, which a first
/// `cargo build` on a new machine has not fetched.
fn iscrawl_dir() -> PathBuf {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let lock =
        std::fs::read_to_string(manifest_dir.join("Cargo.lock")).expect("reading Cargo.lock");
    let version = locked_version(&lock, "iscrawl").expect("Cargo.lock names iscrawl");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let unpacked = cargo_home.and_then(|home| {
        std::fs::read_dir(home.join("registry/src"))
            .ok()?
            .flatten()
            .map(|registry| registry.path().join(format!("iscrawl-{version}")))
            .find(|dir| dir.join("crawlers.min.json").is_file())
    });
    unpacked.unwrap_or_else(|| from_metadata(&manifest_dir))
}

/// The version of package `name` in a `Cargo.lock`.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_owned());
        }
    }
    None
}

fn from_metadata(manifest_dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &target, "--manifest-path"])
        .arg(manifest_dir.join("Cargo.toml"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "the iscrawl package is not in cargo's registry, and cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let manifest = metadata["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .find(|package| package["name"] == "iscrawl")
        .and_then(|package| package["manifest_path"].as_str())
        .expect("iscrawl is a dependency");
    Path::new(manifest)
        .parent()
        .expect("a manifest is in a directory")
        .to_owned()
}
