//! Embeds what the binary is built from, for `tally --version`: the commit
//! and, when the tree differs from it, a digest of the difference, as
//! `scripts/build-id` prints them. Where there is no git checkout (an image
//! build, a release built from `git archive`), `TALLY_BUILD_ID` says it, or
//! the binary says `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
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
