//! Headless Chromium for the browser tests: a run on a loopback URL with
//! what it printed and the console messages it logged, and the arguments
//! that make it a reader's browser on several made-up sites.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::spawner;

/// What one Chromium run printed.
pub struct Run {
    pub stdout: String,
    /// The console messages Chromium logged (`INFO:CONSOLE` lines).
    pub console: Vec<String>,
}

pub fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("Chromium is not installed: scripts/test installs Debian's `chromium`");
}

/// Maps every `.test` host name to 127.0.0.1, so that a test has several
/// sites on loopback.
pub const TEST_NAMES_ON_LOOPBACK: &str = "--host-resolver-rules=MAP *.test 127.0.0.1";

/// Runs headless Chromium on `url` with `extra` arguments.
pub fn run_chromium(url: &str, extra: &[&str]) -> Run {
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    // A `.test` name only where every `.test` name is mapped to loopback.
    let mapped = extra.contains(&TEST_NAMES_ON_LOOPBACK)
        && authority
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.ends_with(".test"));
    if !mapped {
        let parsed: SocketAddr = authority
            .parse()
            .unwrap_or_else(|_| panic!("not an http://ip:port/ URL: {url}"));
        assert!(
            parsed.ip().is_loopback(),
            "Chromium gets loopback URLs only"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!(
        "--user-data-dir={}",
        dir.path().join("profile").display()
    ))
    .args(extra)
    .arg(url)
    .env("HOME", dir.path())
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&stdout_path).unwrap())
    .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut child = spawner::spawn(cmd).expect("start chromium");
    if !spawner::wait_timeout(&mut child, Duration::from_secs(90)) {
        spawner::kill_tree_and_wait(&mut child);
        panic!(
            "chromium did not finish within 90 s: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    }
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    Run {
        stdout: std::fs::read_to_string(&stdout_path).unwrap(),
        console: stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_owned)
            .collect(),
    }
}

/// What a reader's browser sends: a desktop Chrome's user agent, not
/// headless Chromium's own (which names `HeadlessChrome`, a crawler's
/// mark, and is not counted on hits from a browser's page).
pub const DESKTOP_CHROME: &str = "--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The text of the element that starts with `open` in `dom`.
pub fn element_text<'a>(dom: &'a str, open: &str) -> &'a str {
    let start = dom
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in {dom}"))
        + open.len();
    let len = dom[start..].find('<').unwrap();
    &dom[start..start + len]
}
