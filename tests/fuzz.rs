//! Property tests over every parser of client input, and over the whole
//! HTTP surface: whatever a client sends, tally answers below 500, never
//! panics, and every parser keeps its documented rule: each property
//! compares what a parser accepts AND what it refuses with an oracle
//! written from the rule (`tests/fuzz/oracle.rs`), on inputs built from
//! the rule's grammar and near misses of it.
//!
//! Each property in `properties` runs in chunks of [`CHUNK_CASES`] cases,
//! each chunk's generator seeded from one master seed, the property's name
//! and the chunk's number, so a seed replays the same cases exactly:
//!
//! - in the test suite, as many chunks as proptest's case count asks for
//!   (256 cases unless `PROPTEST_CASES` says otherwise), with a new seed
//!   each run;
//! - `FUZZ_SECONDS=S`: chunks until S seconds have passed (the chunk
//!   running then is finished); `FUZZ_CHUNKS=N`: at most N chunks;
//!   `FUZZ_SEED=<hex>`: that master seed (`scripts/fuzz` sets the seed and
//!   the seconds, and passes `FUZZ_CHUNKS` on).
//!
//! Every run prints one line per property, `fuzz: <name> seed=<hex>
//! chunks=<n> cases=<n> seconds=<s> result=ok|failed`, where `cases` counts
//! the calls of the property that ran (the regressions file's, and the
//! shrinking after a failure, included); a failure also prints its smallest
//! input and the command that replays it. Failures proptest finds are kept in
//! `tests/fuzz.proptest-regressions` and replayed first by every run; the
//! hand-picked hostile inputs of `tests/fuzz/corpus/` are replayed by
//! [`the_corpus_of_hostile_inputs_replays`].

mod support;

#[path = "fuzz/oracle.rs"]
mod oracle;

use std::any::Any;
use std::cell::Cell;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{
    Config, FailurePersistence, FileFailurePersistence, PersistedSeed, RngAlgorithm,
    TestCaseResult, TestError, TestRng, TestRunner,
};
use sha2::{Digest, Sha256};
use support::app::{TOKEN, TestApp};
use tally::domain::origin::{parse_origin, parse_origins};
use tally::domain::page::{MAX_PAGE_LEN, Page, parse_kept_params};
use tally::domain::time::{format_date, format_timestamp, parse_instant};
use tally::domain::{SiteRules, Slug, TrailingSlash};
use tally::http::assets::if_none_match;
use tally::http::badge::{Options, Style, render};
use tally::http::client::{Proxies, client_ip};
use tally::http::dashboard::page_href;
use tally::http::extract::{PageParam, raw_page_param};
use tally::http::session::{SESSION_SECS, session_expiry, session_value};
use tally::http::transfer::parse_import;
use tally::net::NetList;
use tower::ServiceExt;

use oracle::Json;

// ---------------------------------------------------------------------
// The runner: chunks of cases, each seeded from the master seed.

/// Where failures are kept, and replayed from first.
const REGRESSIONS: &str = "tests/fuzz.proptest-regressions";

/// Cases per chunk. A replay reproduces a run only with the same value.
const CHUNK_CASES: u32 = 256;

/// How long and with what seed the properties run (see the module doc).
#[derive(Debug, Clone, Copy)]
struct Plan {
    seed: u64,
    seconds: Option<f64>,
    chunks: Option<u64>,
}

impl Plan {
    fn from_env() -> Plan {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let seed = var("FUZZ_SEED").map(|s| {
            let hex = s.trim().trim_start_matches("0x");
            u64::from_str_radix(hex, 16)
                .unwrap_or_else(|_| panic!("FUZZ_SEED={s:?} is not a hex number"))
        });
        let seconds = var("FUZZ_SECONDS").map(|s| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .unwrap_or_else(|| panic!("FUZZ_SECONDS={s:?} is not a number of seconds"))
        });
        let chunks = var("FUZZ_CHUNKS").map(|s| {
            s.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("FUZZ_CHUNKS={s:?} is not a whole number"))
        });
        let chunks = match (seconds, chunks) {
            (None, None) => Some(u64::from(Config::default().cases.div_ceil(CHUNK_CASES)).max(1)),
            (_, chunks) => chunks,
        };
        Plan {
            seed: seed.unwrap_or_else(|| fastrand::u64(..)),
            seconds,
            chunks,
        }
    }

    fn done(&self, chunks: u64, started: Instant) -> bool {
        self.chunks.is_some_and(|n| chunks >= n)
            || self
                .seconds
                .is_some_and(|s| started.elapsed().as_secs_f64() >= s)
    }
}

/// The generator's seed for one chunk of one property.
fn chunk_seed(master: u64, property: &str, chunk: u64) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"tally fuzz chunk\0");
    hash.update(master.to_le_bytes());
    hash.update(property.as_bytes());
    hash.update([0]);
    hash.update(chunk.to_le_bytes());
    hash.finalize().into()
}

/// Keeps a failing case's seed in the regressions file without replaying
/// the file again: each run replays it once, before its first chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SaveOnly;

impl FailurePersistence for SaveOnly {
    fn load_persisted_failures2(&self, _: Option<&'static str>) -> Vec<PersistedSeed> {
        Vec::new()
    }

    fn save_persisted_failure2(
        &mut self,
        source: Option<&'static str>,
        seed: PersistedSeed,
        value: &dyn Debug,
    ) {
        FileFailurePersistence::Direct(REGRESSIONS).save_persisted_failure2(source, seed, value);
    }

    fn box_clone(&self) -> Box<dyn FailurePersistence> {
        Box::new(*self)
    }

    fn eq(&self, other: &dyn FailurePersistence) -> bool {
        other.as_any().is::<SaveOnly>()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Runs one property as the [`Plan`] says: the regressions file, then
/// chunks of new cases; prints its `fuzz:` line; panics on a failure,
/// naming the smallest failing input proptest found.
fn check<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult) {
    if let Some(thread) = std::thread::current().name().filter(|t| *t != "main") {
        assert!(
            thread.ends_with(name),
            "the test {thread} reports as {name}"
        );
    }
    let plan = Plan::from_env();
    let started = Instant::now();
    let calls = Cell::new(0u64);
    let counted = |value: S::Value| {
        calls.set(calls.get() + 1);
        test(value)
    };
    let mut chunks = 0;
    let mut outcome = TestRunner::new(Config {
        cases: 0,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    })
    .run(&strategy, counted);
    while outcome.is_ok() && !plan.done(chunks, started) {
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &chunk_seed(plan.seed, name, chunks));
        let config = Config {
            cases: CHUNK_CASES,
            failure_persistence: Some(Box::new(SaveOnly)),
            rng_algorithm: RngAlgorithm::ChaCha,
            ..Config::default()
        };
        chunks += 1;
        outcome = TestRunner::new_with_rng(config, rng).run(&strategy, counted);
    }
    let result = if outcome.is_ok() { "ok" } else { "failed" };
    println!(
        "fuzz: {name} seed={:016x} chunks={chunks} cases={} seconds={:.1} result={result}",
        plan.seed,
        calls.get(),
        started.elapsed().as_secs_f64(),
    );
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            println!("fuzz: {name} minimal failing input: {input:?}");
            println!("fuzz: {name} why: {why}");
            panic!(
                "{name} failed: {why}; minimal failing input: {input:?}\n\
                 replay: FUZZ_SEED={:016x} FUZZ_CHUNKS={chunks} scripts/fuzz {name}",
                plan.seed
            );
        }
        Err(TestError::Abort(why)) => panic!("{name} aborted: {why}"),
    }
}

// ---------------------------------------------------------------------
// Shared generators.

/// Applies up to three edits (insert, replace or delete one character,
/// or double the text) with characters from `alphabet`: near misses of
/// what `base` builds.
fn edited(
    base: impl Strategy<Value = String>,
    alphabet: &'static str,
) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    let edit = (0u8..7, any::<Index>(), prop::sample::select(chars));
    (base, prop::collection::vec(edit, 1..4)).prop_map(|(text, edits)| {
        let mut chars: Vec<char> = text.chars().collect();
        for (op, at, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 | 1 => chars.insert(i, c),
                2 | 3 if i < chars.len() => chars[i] = c,
                4 | 5 if i < chars.len() => {
                    chars.remove(i);
                }
                6 => chars.extend(chars.clone()),
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

/// Characters that break rules: controls (C0, DEL, C1), separators,
/// percent signs, non-ASCII letters (one whose lower case is ASCII),
/// upper case.
const HOSTILE: &str = "\u{0}\t\n\r\u{7}\u{7f}\u{80}\u{85}\u{9f}\u{a0} %#?&=+/\\:@.*-_,;\"'<>[]Aé\u{212a}\u{2028}\u{fffd}🦀";

/// Percent-encodes every byte but unreserved characters, so any string
/// makes a valid URI.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A piece of a URI's query as clients write them: raw characters that
/// URIs allow (with `+`, `%` sequences good and bad), or percent-encoded
/// text of any kind.
fn query_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._~!$'()*,;:@/?+-]{0,12}",
        2 => any::<String>().prop_map(|s| percent(&s)),
        2 => prop::collection::vec(any::<u8>(), 0..6)
            .prop_map(|b| b.iter().map(|b| format!("%{b:02x}")).collect()),
        2 => prop::sample::select(vec![
            "%", "%2", "%zz", "%FF", "%C3", "%C3%A9", "%c3%a9", "%E2%82", "%E2%82%AC", "%00",
            "%0A", "%7F", "%C2%80", "%C2%9F", "%C2%A0", "%25", "%2B", "%26", "%3D", "%23", "+",
            "%2F", "%3F", "%ED%A0%80", "%F0%9F%A6%80", "%F4%90%80%80",
        ])
        .prop_map(str::to_owned),
    ]
}

fn unique_strings(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

// ---------------------------------------------------------------------
// The app, for the properties that go through HTTP.

struct App {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
    /// The allowed origins of site `listed`, as given.
    listed: Vec<String>,
}

const LISTED: [&str; 5] = [
    "example.com",
    "shop.example.com:8443",
    "127.0.0.1",
    "[::1]:3000",
    "https://Secure.Example.org",
];

/// One runtime and one app for every case: a case is a request or a few.
fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(build_app)
}

/// An app of its own for random requests, which may delete, reset or fill
/// its sites: the other properties' sites stay as they were made, even
/// when every test runs in one process.
fn scratch_app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(build_app)
}

fn build_app() -> App {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::sqlite(&[]));
    let listed: Vec<String> = LISTED.iter().map(|s| s.to_string()).collect();
    let sites = [
        // Public, so that its details read as a page's script reads them.
        serde_json::json!({"slug": "blog", "public": true}),
        serde_json::json!({"slug": "docs.example.org"}),
        serde_json::json!({"slug": "listed", "origins": listed}),
        serde_json::json!({"slug": "kept", "keep_params": ["lang", "id"]}),
    ];
    for site in sites {
        let create = Request::post("/api/v1/sites")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(site.to_string()))
            .unwrap();
        let status = runtime
            .block_on(app.router().oneshot(create))
            .unwrap()
            .status();
        assert_eq!(status, 201, "{site}");
    }
    App {
        runtime,
        app,
        listed,
    }
}

/// A public address of its own for each request, so that no per-client
/// limit (of reads, of failed tokens) carries from one case to the next.
fn fresh_peer() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (1 << 24);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from((11 << 24) | n)), 40_000)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Result<serde_json::Value, TestCaseError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            TestCaseError::fail(format!(
                "{}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ))
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` from a fresh public address and reads the whole answer.
fn send(request: Request<Body>) -> Answer {
    send_to(app(), request)
}

fn send_to(app: &App, mut request: Request<Body>) -> Answer {
    request.extensions_mut().insert(ConnectInfo(fresh_peer()));
    app.runtime.block_on(async {
        let response = app.app.router().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    })
}

fn error_code(answer: &Answer) -> Result<String, TestCaseError> {
    let body = answer.json()?;
    Ok(body["error"]["code"]
        .as_str()
        .unwrap_or("(none)")
        .to_owned())
}

// ---------------------------------------------------------------------
// Generators of each parser's input.

fn slug_text() -> impl Strategy<Value = String> {
    let valid = ("[a-z0-9]", "[a-z0-9._-]{0,63}").prop_map(|(a, b)| a + &b);
    prop_oneof![
        3 => valid.clone(),
        3 => edited(valid, "abz09._-A Z/é\u{0}\u{212a}"),
        1 => "[a-z0-9][a-z0-9._-]{60,66}",
        1 => "[._-][a-z0-9._-]{0,5}",
        1 => any::<String>(),
    ]
}

fn keep_names() -> impl Strategy<Value = Vec<String>> {
    let name = prop_oneof![
        4 => prop::sample::select(vec!["lang", "id", "q", "page", "a.b", "X-y_z"]).prop_map(str::to_owned),
        1 => "[A-Za-z0-9_.-]{1,6}",
    ];
    prop::collection::vec(name, 0..4).prop_map(unique_strings)
}

/// What the normalisation of a name acts on (docs/pages.md, Paths): dot
/// segments plain and encoded, slashes, decomposed and composed letters,
/// encoded `?`, `#` and `%`, bidirectional controls and invisible
/// characters raw and encoded, and their visible neighbours.
fn normalised_piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        ".",
        "..",
        "%2E",
        "%2e%2E",
        ".%2E",
        "...",
        "",
        "/",
        "%2F%2F",
        "e\u{301}",
        "e%CC%81",
        "\u{e9}",
        "\u{212B}",
        "\u{1100}\u{1161}",
        "%3F",
        "%3f",
        "%23",
        "%25",
        "%253F",
        "%",
        "%2",
        "+",
        "%2B",
        "\u{202E}",
        "%E2%80%AE",
        "\u{61C}",
        "\u{2069}",
        "\u{200B}",
        "%E2%80%8B",
        "\u{200D}",
        "\u{2060}",
        "\u{FEFF}",
        "\u{AD}",
        "\u{34F}",
        "\u{FE0F}",
        "\u{3164}",
        "\u{E0041}",
        "\u{E01EF}",
        "\u{1343F}",
        "\u{A0}",
        "\u{2010}",
        "\u{2028}",
        "\u{FFFD}",
    ])
    .prop_map(str::to_owned)
}

/// Pages as clients send them: a path of segments (plain, encoded,
/// hostile, what normalising acts on), a query with kept and dropped
/// parameters, a fragment; and lengths either side of the limits.
fn page_text() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => "[A-Za-z0-9._~!$&'()*+,;=:@-]{0,12}",
        2 => query_piece(),
        1 => any::<char>().prop_map(String::from),
        1 => prop::sample::select(vec!["a b", "é", "\u{7}", "\u{85}", "\u{2028}", "..", "%2F", ""])
            .prop_map(str::to_owned),
        3 => prop::collection::vec(normalised_piece(), 1..3).prop_map(|p| p.concat()),
        1 => (490usize..520).prop_map(|n| "p".repeat(n)),
    ];
    let path = prop::collection::vec(segment, 0..4).prop_map(|s| format!("/{}", s.join("/")));
    let start = prop_oneof![
        12 => Just(""),
        1 => Just("x"),
        1 => Just("%2F"),
        1 => Just("/"),
        1 => Just("https://example.com"),
        1 => Just(" "),
        1 => Just("?"),
        1 => Just("#"),
    ];
    let key = prop_oneof![
        4 => prop::sample::select(vec!["lang", "id", "lang", "id", "q", "page", "a.b", "X-y_z", "utm_source"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["la%6Eg", "%69d", "LANG", "lang+", "lang%00", "id%FF", "", "a%2Eb"]).prop_map(str::to_owned),
    ];
    let value = prop_oneof![6 => query_piece(), 1 => normalised_piece()];
    let pair = (key, prop::option::weighted(0.9, value)).prop_map(|(k, v)| match v {
        Some(v) => format!("{k}={v}"),
        None => k,
    });
    let query = prop::option::weighted(
        0.8,
        prop::collection::vec(pair, 1..5).prop_map(|p| format!("?{}", p.join("&"))),
    );
    let fragment = prop::option::weighted(0.2, "#[ -~]{0,12}");
    let long_query = prop::option::weighted(
        0.05,
        (1990usize..2060).prop_map(|n| format!("&utm={}", "u".repeat(n))),
    );
    let built = (start, path, query, long_query, fragment).prop_map(
        |(start, path, query, long, fragment)| {
            format!(
                "{start}{path}{}{}{}",
                query.unwrap_or_default(),
                long.unwrap_or_default(),
                fragment.unwrap_or_default()
            )
        },
    );
    let built = built.boxed();
    prop_oneof![9 => built.clone(), 1 => edited(built, HOSTILE)]
}

/// Instants from RFC 3339's grammar with every field either side of its
/// range, and near misses.
fn instant_text() -> impl Strategy<Value = String> {
    // Mostly within each field's range, sometimes just past it.
    let field = |lo: u32, hi: u32| prop_oneof![8 => lo..=hi, 1 => 0..=hi + 2];
    let year = prop_oneof![
        2 => 1969i64..=1971,
        1 => 1999i64..=2001,
        3 => 2023i64..=2027,
        2 => 9998i64..=10_000,
        2 => 0i64..=10_000
    ];
    let offset = prop_oneof![
        3 => Just("Z".to_owned()),
        1 => Just("z".to_owned()),
        3 => (prop::sample::select(vec!["+", "-"]), field(0, 23), field(0, 59))
            .prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
        1 => prop::sample::select(vec!["", "+0200", "+2:00", "+02", "UTC", "+02:00Z", " Z", "-00:00"]).prop_map(str::to_owned),
    ];
    let time = (
        prop_oneof![
            8 => prop::sample::select(vec!["T", "t", " "]),
            1 => prop::sample::select(vec!["_", "", "TT"]),
        ],
        field(0, 23),
        field(0, 59),
        field(0, 60),
        prop::option::weighted(0.3, "\\.[0-9]{0,12}"),
        offset,
    )
        .prop_map(|(sep, h, m, s, frac, off)| {
            format!("{sep}{h:02}:{m:02}:{s:02}{}{off}", frac.unwrap_or_default())
        });
    let grammar = (
        year,
        field(1, 12),
        field(1, 31),
        prop::option::weighted(0.7, time),
    )
        .prop_map(|(y, mo, d, time)| format!("{y:04}-{mo:02}-{d:02}{}", time.unwrap_or_default()))
        .boxed();
    prop_oneof![
        6 => grammar.clone(),
        2 => edited(grammar, "0123456789-:TZ+. z\u{663}"),
        1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?(Z|[+-][0-9]{2}:[0-9]{2}))?",
        1 => any::<String>(),
    ]
}

/// Instants as an export writes them, mostly; sometimes anything.
fn written_instant() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0i64..253_402_300_800).prop_map(|t| format_timestamp(t - t % 3600)),
        1 => (0i64..253_402_300_800).prop_map(format_date),
        1 => instant_text(),
    ]
}

/// Addresses that proxy lists name, and any.
fn address() -> impl Strategy<Value = IpAddr> {
    let named = prop::sample::select(vec![
        "10.0.0.7",
        "10.1.2.3",
        "127.0.0.1",
        "192.168.1.7",
        "192.168.1.8",
        "203.0.113.5",
        "198.51.100.1",
        "::1",
        "fd00::5",
        "2001:db8::5",
        "2001:db9::1",
        "::ffff:10.0.0.9",
        "::ffff:203.0.113.9",
        "0.0.0.0",
        "::",
    ])
    .prop_map(|s| s.parse::<IpAddr>().unwrap());
    prop_oneof![4 => named, 1 => any::<IpAddr>()]
}

/// Networks a proxy list may name.
const NETS: [&str; 9] = [
    "10.0.0.0/8",
    "127.0.0.0/8",
    "192.168.1.7",
    "::1",
    "fc00::/7",
    "2001:db8::/32",
    "203.0.113.0/24",
    "0.0.0.0/0",
    "::/0",
];

fn nets(mask: u16) -> (String, Vec<oracle::Net>) {
    let chosen: Vec<&str> = NETS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    let parsed = chosen
        .iter()
        .map(|n| {
            let (addr, prefix) = n.split_once('/').unwrap_or((n, ""));
            let addr = oracle::canonical(addr.parse().unwrap());
            let width = if addr.is_ipv4() { 32 } else { 128 };
            oracle::Net {
                addr,
                prefix: prefix.parse().unwrap_or(width),
            }
        })
        .collect();
    (chosen.join(","), parsed)
}

/// One hop as proxies and clients write them.
fn hop_text() -> impl Strategy<Value = String> {
    let written = (address(), 0u8..6, any::<u16>()).prop_map(|(ip, form, port)| match (form, ip) {
        (0 | 1, ip) => ip.to_string(),
        (2, IpAddr::V4(v4)) => format!("{v4}:{port}"),
        (2, IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        (3, IpAddr::V4(v4)) => format!("{v4}:00{port}"),
        (3, IpAddr::V6(v6)) => format!("[{v6}]"),
        (4, ip) => format!(" {ip}\t"),
        (_, ip) => ip.to_string().to_uppercase(),
    });
    prop_oneof![
        6 => written,
        1 => prop::sample::select(vec![
            "unknown", "", " ", "_hidden", "1.2.3", "1.2.3.4:99999", "1.2.3.4:", "[::1]:", "::1:80",
            "1.2.3.4:+80", "01.2.3.4", "1.2.3.4 5", "[1.2.3.4]:80", "for=1.2.3.4",
        ])
        .prop_map(str::to_owned),
    ]
}

fn forwarded_header() -> impl Strategy<Value = Vec<u8>> {
    let list = (
        prop::collection::vec(hop_text(), 1..5),
        prop::sample::select(vec![",", ", ", " , "]),
    )
        .prop_map(|(hops, sep)| hops.join(sep).into_bytes());
    prop_oneof![
        8 => list,
        1 => (hop_text(), hop_text()).prop_map(|(a, b)| format!("{a}, \u{e9}, {b}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ]
}

fn colour_value() -> impl Strategy<Value = String> {
    // The documented names, the aliases the code also takes, and near
    // misses.
    let mut names = oracle::COLOUR_NAMES.to_vec();
    names.extend([
        "lightgray",
        "gray",
        "success",
        "important",
        "critical",
        "informational",
        "inactive",
        "white",
        "bleu",
        "greeen",
    ]);
    let named = (prop::sample::select(names), any::<u32>()).prop_map(|(n, bits)| {
        n.chars()
            .enumerate()
            .map(|(i, c)| {
                if bits & (1 << (i % 32)) != 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect::<String>()
    });
    prop_oneof![
        3 => named,
        3 => "#?[0-9a-fA-F]{2,7}",
        1 => "#?[0-9a-gA-G]{3}",
        1 => "##[0-9a-f]{3}|#[0-9a-f]{3} |%23[0-9a-f]{3}",
    ]
}

fn badge_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop::sample::select(vec![
        "label",
        "label",
        "color",
        "color",
        "label_color",
        "style",
        "readonly",
        "v",
        "Label",
        "",
    ]);
    let value = prop_oneof![
        3 => "[ -~]{0,44}",
        2 => colour_value(),
        1 => prop::sample::select(vec![
            "flat", "flat-square", "plastic", "Flat", "for-the-badge", "1", "true", "yes", "0",
            "false", "no", "", "TRUE", "2",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{38,42}",
        1 => edited("[a-z ]{1,10}".prop_map(String::from), "\u{0}\u{7}\u{85}\u{9f}\u{a0}é"),
        1 => any::<String>(),
    ];
    prop::collection::vec((key.prop_map(str::to_owned), value), 0..5)
}

/// Allowed-origin entries built from the grammar, with near misses in
/// every part.
fn origin_text() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "", "", "", "http://", "https://", "HTTPS://", "Http://", "ftp://", "://", "https:/",
    ]);
    let user = prop::sample::select(vec!["", "", "", "", "", "", "user@", "u:p@", "@"]);
    let label = prop_oneof![
        6 => "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?",
        1 => "[A-Za-z0-9-]{0,10}",
        1 => Just("a".repeat(63)),
        1 => Just("b".repeat(64)),
        1 => Just("xn--caf-dma".to_owned()),
        1 => prop::sample::select(vec!["under_score", "café", "*", "", "-a", "a-", "123"]).prop_map(str::to_owned),
    ];
    let name = prop::collection::vec(label, 1..4).prop_map(|l| l.join("."));
    let host = prop_oneof![
        6 => name,
        2 => (0u16..300, 0u16..300, 0u16..300, 0u16..300).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        1 => any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
        2 => any::<Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
        1 => prop::sample::select(vec![
            "localhost", "null", "NULL", "[::1]", "[2001:DB8:0::1]", "[::ffff:1.2.3.4]", "::1",
            "[::1", "[not:an:ip]", "01.2.3.4", "1.2.3", "example.123", "example.com.",
            ".example.com", "a..b", "exa mple.com", "exa\u{7}mple.com",
        ])
        .prop_map(str::to_owned),
        1 => Just(format!("{}.com", ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(59)].join("."))),
        1 => Just(format!("{}.com", ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(60)].join("."))),
    ];
    let port = prop_oneof![
        6 => Just(String::new()),
        4 => prop::sample::select(vec![
            ":80", ":443", ":8443", ":1", ":65535", ":0", ":65536", ":080", ":+80", ":", ":8080:1",
            ":99999", ":3000",
        ])
        .prop_map(str::to_owned),
    ];
    let tail = prop::sample::select(vec![
        "", "", "", "", "/", "//", "/blog", "?x=1", "#top", " ",
    ]);
    let valid_host = prop_oneof![
        4 => prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", 1..4).prop_map(|l| l.join(".")),
        1 => any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
        1 => any::<Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
    ];
    let valid = (
        prop::sample::select(vec!["", "", "http://", "https://", "HTTPS://"]),
        valid_host,
        prop::option::weighted(0.4, 1u32..=65_535),
        prop::sample::select(vec!["", "", "", "/"]),
    )
        .prop_map(|(s, h, p, t)| {
            let p = p.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{s}{h}{p}{t}")
        });
    let grammar = (scheme, user, host, port, tail)
        .prop_map(|(s, u, h, p, t)| format!("{s}{u}{h}{p}{t}"))
        .boxed();
    prop_oneof![
        4 => valid,
        4 => grammar.clone(),
        2 => edited(grammar, "a.-:/[]@*#?0 A"),
        1 => any::<String>(),
    ]
}

/// A JSON object's fields given in a shape: as they are, one left out,
/// one unknown added, one given twice, or the values as an array.
fn shaped(fields: Vec<(&'static str, Json)>, shape: u8, at: Index) -> Json {
    let mut fields: Vec<(String, Json)> =
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    if !fields.is_empty() {
        let n = at.index(fields.len());
        fields.rotate_left(n);
    }
    match shape {
        0 if !fields.is_empty() => {
            fields.remove(at.index(fields.len()));
        }
        1 => fields.push(("extra".into(), Json::Int(1))),
        2 if !fields.is_empty() => {
            let twice = fields[at.index(fields.len())].clone();
            fields.push(twice);
        }
        3 => return Json::Arr(fields.into_iter().map(|(_, v)| v).collect()),
        _ => {}
    }
    Json::Obj(fields)
}

fn shape() -> impl Strategy<Value = (u8, Index)> {
    (
        prop_oneof![40 => Just(9u8), 1 => Just(0), 1 => Just(1), 1 => Just(2), 1 => Just(3)],
        any::<Index>(),
    )
}

fn json_whole() -> impl Strategy<Value = Json> {
    prop_oneof![
        8 => (0i128..2000).prop_map(Json::Int),
        1 => prop::sample::select(vec![
            -1i128,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            i128::from(i64::MAX) + 1,
            i128::from(u64::MAX),
            9_007_199_254_740_991,
        ])
        .prop_map(Json::Int),
        1 => prop_oneof![
            Just(Json::Float(1.0)),
            Just(Json::Float(2.5)),
            Just(Json::Str("5".into())),
            Just(Json::Null),
            Just(Json::Bool(true)),
        ],
    ]
}

fn json_text(s: impl Strategy<Value = String>) -> impl Strategy<Value = Json> {
    prop_oneof![
        9 => s.prop_map(Json::Str),
        1 => prop_oneof![Just(Json::Int(7)), Just(Json::Null), Just(Json::Arr(vec![]))],
    ]
}

fn import_hours() -> impl Strategy<Value = Json> {
    let hour = (json_text(written_instant()), json_whole(), shape())
        .prop_map(|(t, hits, (s, at))| shaped(vec![("t", t), ("hits", hits)], s, at));
    prop_oneof![
        9 => prop::collection::vec(hour, 0..4).prop_map(Json::Arr),
        1 => Just(Json::Obj(vec![])),
    ]
}

fn stored_page_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "/[a-z/é ]{0,12}",
        1 => Just("(other)".to_owned()),
        1 => Just("(OTHER)".to_owned()),
        1 => (510usize..515).prop_map(|n| format!("/{}", "x".repeat(n))),
        1 => edited("/[a-z]{0,6}".prop_map(String::from), "\u{0}\u{7}\u{85}/x("),
    ]
}

fn import_pages() -> impl Strategy<Value = Json> {
    let date = prop_oneof![
        6 => (0i64..253_402_300_800).prop_map(format_date),
        1 => instant_text(),
    ];
    let day = (json_text(date), json_whole(), shape())
        .prop_map(|(d, hits, (s, at))| shaped(vec![("d", d), ("hits", hits)], s, at));
    let page = (
        json_text(stored_page_text()),
        json_whole(),
        prop::option::weighted(0.6, prop::collection::vec(day, 0..3).prop_map(Json::Arr)),
        shape(),
    )
        .prop_map(|(page, count, daily, (s, at))| {
            let mut fields = vec![("page", page), ("count", count)];
            fields.extend(daily.map(|d| ("daily", d)));
            shaped(fields, s, at)
        });
    prop_oneof![
        9 => prop::collection::vec(page, 0..3).prop_map(Json::Arr),
        1 => Just(Json::Str("pages".into())),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Base {
    Absent,
    /// `count` minus the hours' hits, where both are numbers.
    Consistent,
    Off(i64),
}

fn import_site() -> impl Strategy<Value = Json> {
    let base = prop_oneof![
        3 => Just(Base::Absent),
        3 => Just(Base::Consistent),
        1 => (-3i64..3).prop_map(Base::Off),
    ];
    let slug = prop_oneof![
        6 => ("[a-z0-9]", "[a-z0-9._-]{0,10}").prop_map(|(a, b)| a + &b),
        1 => slug_text(),
    ];
    (
        json_text(slug),
        json_whole(),
        prop::option::weighted(0.4, json_text("[ -~]{0,12}")),
        base,
        prop::option::weighted(0.3, json_text(written_instant())),
        prop::option::weighted(0.5, import_hours()),
        prop::option::weighted(0.4, import_pages()),
        shape(),
    )
        .prop_map(
            |(slug, count, name, base, created, hourly, pages, (s, at))| {
                let sum = |hourly: &Option<Json>| -> Option<i128> {
                    let Some(Json::Arr(hours)) = hourly else {
                        return Some(0);
                    };
                    hours
                        .iter()
                        .map(|h| match h {
                            Json::Obj(f) => f.iter().find_map(|(k, v)| match (k.as_str(), v) {
                                ("hits", Json::Int(n)) => Some(*n),
                                _ => None,
                            }),
                            _ => None,
                        })
                        .sum()
                };
                let base = match (base, &count) {
                    (Base::Absent, _) => None,
                    (Base::Consistent, Json::Int(c)) => sum(&hourly).map(|s| Json::Int(c - s)),
                    (Base::Consistent, _) => Some(Json::Int(0)),
                    (Base::Off(d), Json::Int(c)) => {
                        sum(&hourly).map(|s| Json::Int(c - s + i128::from(d)))
                    }
                    (Base::Off(d), _) => Some(Json::Int(i128::from(d))),
                };
                let mut fields = vec![("slug", slug), ("count", count)];
                fields.extend(name.map(|v| ("name", v)));
                fields.extend(base.map(|v| ("base_count", v)));
                fields.extend(created.map(|v| ("created_at", v)));
                fields.extend(hourly.map(|v| ("hourly", v)));
                fields.extend(pages.map(|v| ("pages", v)));
                shaped(fields, s, at)
            },
        )
}

/// The time of an import, 2026-11-23T02:30:00Z: hours and days after it
/// are refused.
const IMPORT_NOW: i64 = 1_795_401_000;

/// When an import runs: at [`IMPORT_NOW`], at any time up to the end of
/// 9999, or at its last second (when every hour before the last one a
/// series can show is in the past).
fn import_now() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(IMPORT_NOW),
        2 => 0i64..253_402_300_800,
        1 => Just(253_402_300_799i64),
    ]
}

/// Import documents: lists and exports built from the documented shape
/// with near misses at every level, cut short, or not JSON at all.
fn import_body() -> impl Strategy<Value = Vec<u8>> {
    let sites = prop::collection::vec(import_site(), 0..4);
    let doc = (
        sites,
        0u8..8,
        prop::option::weighted(
            0.5,
            json_text(prop_oneof![
                3 => written_instant().boxed(),
                1 => "[ -~]{0,20}".boxed(),
            ]),
        ),
        shape(),
    )
        .prop_map(|(sites, form, exported_at, (s, at))| match form {
            0..=3 => Json::Arr(sites),
            4..=6 => {
                let mut fields = vec![("sites", Json::Arr(sites))];
                fields.extend(exported_at.map(|v| ("exported_at", v)));
                shaped(fields, s, at)
            }
            _ => Json::Obj(vec![("sites".into(), Json::Obj(vec![]))]),
        })
        .boxed();
    prop_oneof![
        8 => doc.clone().prop_map(|d| d.text().into_bytes()),
        1 => (doc, any::<Index>()).prop_map(|(d, at)| {
            let text = d.text().into_bytes();
            let cut = at.index(text.len() + 1);
            text[..cut].to_vec()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

#[derive(Debug, Clone)]
enum Tamper {
    Nothing,
    Prefix(&'static str),
    UpperTag,
    SignInTag(Index),
    Flip(Index, char),
    Expiry(i64),
    Cut(Index),
    Append(char),
    Other(String),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        6 => Just(Tamper::Nothing),
        2 => prop::sample::select(vec!["+", "0", "00", " ", "-"]).prop_map(Tamper::Prefix),
        2 => Just(Tamper::UpperTag),
        1 => any::<Index>().prop_map(Tamper::SignInTag),
        2 => (any::<Index>(), prop::sample::select(vec!['0', 'f', 'F', '.', 'x', '+'])).prop_map(|(i, c)| Tamper::Flip(i, c)),
        1 => prop::sample::select(vec![-1i64, 1, -(SESSION_SECS as i64), 3600]).prop_map(Tamper::Expiry),
        1 => any::<Index>().prop_map(Tamper::Cut),
        1 => prop::sample::select(vec!['0', 'a', ' ', '.']).prop_map(Tamper::Append),
        1 => "[0-9a-f.]{0,100}".prop_map(Tamper::Other),
    ]
}

/// `value` changed as `tamper` says.
fn tampered(value: &str, tamper: &Tamper) -> String {
    let (expiry, rest) = value.split_once('.').unwrap();
    let (id, tag) = rest.split_once('.').unwrap();
    match tamper {
        Tamper::Nothing => value.to_owned(),
        Tamper::Prefix(p) => format!("{p}{value}"),
        Tamper::UpperTag => format!("{expiry}.{id}.{}", tag.to_ascii_uppercase()),
        Tamper::SignInTag(at) => {
            let pair = at.index(tag.len() / 2) * 2;
            format!("{expiry}.{id}.{}+{}", &tag[..pair], &tag[pair + 1..])
        }
        Tamper::Flip(at, c) => {
            let mut chars: Vec<char> = value.chars().collect();
            let i = at.index(chars.len());
            chars[i] = *c;
            chars.into_iter().collect()
        }
        Tamper::Expiry(d) => {
            let e: i64 = expiry.parse().unwrap();
            format!("{}.{id}.{tag}", e + d)
        }
        Tamper::Cut(at) => value[..at.index(value.len())].to_owned(),
        Tamper::Append(c) => format!("{value}{c}"),
        Tamper::Other(s) => s.clone(),
    }
}

// ---------------------------------------------------------------------
// The properties. `scripts/fuzz` runs every test of this module.

mod properties {
    use super::*;

    /// A slug is accepted exactly when it follows the documented rule,
    /// and is then the text given.
    #[test]
    fn slugs_follow_the_documented_rule() {
        check("slugs_follow_the_documented_rule", slug_text(), |text| {
            let parsed = Slug::parse(&text).map(|s| s.as_str().to_owned()).ok();
            prop_assert_eq!(parsed, oracle::slug(&text), "{:?}", text);
            Ok(())
        });
    }

    /// A page is refused, or normalised to the name docs/pages.md says,
    /// exactly, whether the site keeps or merges trailing slashes; a
    /// parsed page is a name the store takes back as it is, a name without
    /// kept parameters is its own normalisation, and the dashboard's link
    /// to a page reads back that page.
    #[test]
    fn pages_follow_the_documented_rule() {
        check(
            "pages_follow_the_documented_rule",
            (page_text(), keep_names(), any::<bool>()),
            |(raw, keep, merge)| {
                let rules = SiteRules {
                    keep_params: keep.clone(),
                    trailing_slash: if merge {
                        TrailingSlash::Merge
                    } else {
                        TrailingSlash::Keep
                    },
                    ..SiteRules::default()
                };
                let parsed = Page::parse(&raw, &rules);
                let name = parsed.as_ref().map(|p| p.as_str().to_owned()).ok();
                prop_assert_eq!(
                    &name,
                    &oracle::page(&raw, &keep, merge),
                    "{:?} keeping {:?}, merging slashes: {}",
                    raw,
                    keep,
                    merge
                );
                if let Ok(page) = parsed {
                    prop_assert!(page.as_str().len() <= MAX_PAGE_LEN);
                    prop_assert!(!page.is_overflow());
                    prop_assert_eq!(Page::stored(page.as_str()), Ok(page.clone()));
                    if !page.as_str().contains('?') {
                        prop_assert_eq!(Page::parse(page.as_str(), &rules), Ok(page.clone()));
                    }
                    let href = page_href("blog", page.as_str());
                    let query = href.split_once('?').map_or("", |(_, q)| q);
                    let back = raw_page_param(query).map(|raw| Page::named(raw, &rules));
                    prop_assert_eq!(back, Some(Ok(page.clone())), "{}", href);
                }
                Ok(())
            },
        );
    }

    /// The `page` parameter of a query string: the first whose name is
    /// `page` once decoded, its value as it stands (docs/pages.md, Paths: not
    /// form-decoded; the page's own rule decodes it once).
    #[test]
    fn page_parameters_are_read_as_they_stand() {
        let key = prop_oneof![
            3 => Just("page"),
            1 => prop::sample::select(vec!["%70age", "pag%65", "Page", "page+", "pa+ge", "x", "", "page%00"]),
        ];
        let pair = (key, prop::option::weighted(0.9, query_piece())).prop_map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.to_owned(),
        });
        let query = prop::option::weighted(
            0.9,
            prop::collection::vec(pair, 0..4).prop_map(|p| p.join("&")),
        );
        check("page_parameters_are_read_as_they_stand", query, |query| {
            let uri = match &query {
                Some(q) => format!("/badge/blog.svg?{q}"),
                None => "/badge/blog.svg".to_owned(),
            };
            let (mut parts, ()) = Request::get(&uri).body(()).unwrap().into_parts();
            let read = futures::executor::block_on(PageParam::from_request_parts(&mut parts, &()))
                .map(|PageParam(page)| page)
                .map_err(|e| e.code());
            let expected = query
                .as_deref()
                .and_then(|q| {
                    oracle::query_pairs(q)
                        .into_iter()
                        .find(|(k, _)| k == "page")
                })
                .map(|(_, v)| v.to_owned());
            prop_assert_eq!(read, Ok(expected), "{}", uri);
            Ok(())
        });
    }

    /// Instants are read as RFC 3339's grammar and docs/api.md say, to the
    /// exact second; every instant tally writes reads back as itself.
    #[test]
    fn instants_follow_rfc_3339() {
        check(
            "instants_follow_rfc_3339",
            (instant_text(), 0i64..253_402_300_800),
            |(text, t)| {
                prop_assert_eq!(parse_instant(&text), oracle::instant(&text), "{:?}", text);
                let written = format_timestamp(t);
                prop_assert_eq!(oracle::instant(&written), Some(t), "{}", written);
                prop_assert_eq!(parse_instant(&written), Some(t));
                let day = format_date(t);
                prop_assert_eq!(oracle::date(&day), Some(t.div_euclid(86_400)), "{}", day);
                prop_assert_eq!(parse_instant(&day), Some(t - t.rem_euclid(86_400)));
                Ok(())
            },
        );
    }

    /// The client address is exactly what the walk in docs/configuration.md gives: the
    /// peer unless it is a trusted proxy; then its `X-Real-IP` if it may
    /// send one, else `X-Forwarded-For` from the right past trusted hops.
    #[test]
    fn client_addresses_follow_the_documented_walk() {
        let inputs = (
            prop::option::weighted(0.95, address()),
            any::<u16>(),
            any::<u16>(),
            prop::collection::vec(forwarded_header(), 0..3),
            prop::option::weighted(
                0.4,
                prop_oneof![
                    4 => hop_text().prop_map(String::into_bytes),
                    1 => forwarded_header(),
                ],
            ),
        );
        check(
            "client_addresses_follow_the_documented_walk",
            inputs,
            |(peer, trust, real, forwarded, real_ip)| {
                let (trusted_text, trusted) = nets(trust);
                let (real_text, real_from) = nets(real);
                let proxies = Proxies {
                    trusted: trusted_text.parse::<NetList>().unwrap(),
                    real_ip_from: real_text.parse::<NetList>().unwrap(),
                };
                let mut headers = HeaderMap::new();
                let mut sent = Vec::new();
                for value in &forwarded {
                    if let Ok(v) = HeaderValue::from_bytes(value) {
                        headers.append("x-forwarded-for", v);
                        sent.push(value.clone());
                    }
                }
                let real_sent = real_ip.filter(|v| HeaderValue::from_bytes(v).is_ok());
                if let Some(v) = &real_sent {
                    headers.insert("x-real-ip", HeaderValue::from_bytes(v).unwrap());
                }
                let origin = client_ip(peer, &headers, &proxies);
                let expected =
                    oracle::client(peer, &sent, real_sent.as_deref(), &trusted, &real_from);
                prop_assert_eq!(
                    (origin.ip, origin.via_proxy),
                    expected,
                    "peer {:?}, trusted {}, real-ip from {}, headers {:?}",
                    peer,
                    trusted_text,
                    real_text,
                    headers
                );
                Ok(())
            },
        );
    }

    /// Badge options are read as the table in docs/badges.md says, exactly; those
    /// read draw well-formed SVG whose label is the text given.
    #[test]
    fn badge_options_follow_the_documented_table() {
        let reference = |name: &str| {
            Options::parse(&[("color".to_owned(), name.to_owned())])
                .map(|o| o.color)
                .unwrap_or_default()
        };
        check(
            "badge_options_follow_the_documented_table",
            badge_params(),
            |params| {
                let parsed = Options::parse(&params);
                let expected = oracle::badge(&params);
                prop_assert_eq!(parsed.is_ok(), expected.is_some(), "{:?}", params);
                let (Ok(options), Some(expected)) = (parsed, expected) else {
                    return Ok(());
                };
                let colour = |c: &oracle::Colour| match c {
                    oracle::Colour::Hex(hex) => hex.clone(),
                    oracle::Colour::Named(name) => reference(name),
                };
                let style = match options.style {
                    Style::Flat => "flat",
                    Style::FlatSquare => "flat-square",
                    Style::Plastic => "plastic",
                };
                prop_assert_eq!(&options.label, &expected.label);
                prop_assert_eq!(&options.color, &colour(&expected.color), "{:?}", params);
                prop_assert_eq!(
                    &options.label_color,
                    &colour(&expected.label_color),
                    "{:?}",
                    params
                );
                prop_assert_eq!(style, expected.style);
                prop_assert_eq!(options.readonly, expected.readonly);
                let svg = render(&options, "42");
                let doc = roxmltree::Document::parse(&svg)
                    .map_err(|e| TestCaseError::fail(format!("{params:?}: {e}\n{svg}")))?;
                let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
                prop_assert!(
                    texts.contains(&options.label.as_str()),
                    "{:?} in {:?}",
                    options.label,
                    texts
                );
                Ok(())
            },
        );
    }

    /// Allowed origins, one entry and a list: refused, or normalised to
    /// what docs/api.md says, exactly.
    #[test]
    fn allowed_origins_follow_the_documented_rule() {
        let list = prop_oneof![
            4 => prop::collection::vec(origin_text(), 0..5),
            1 => prop::collection::vec("[a-z]{1,6}\\.test", 30..35),
        ];
        check(
            "allowed_origins_follow_the_documented_rule",
            (origin_text(), list),
            |(entry, list)| {
                prop_assert_eq!(
                    parse_origin(&entry).ok(),
                    oracle::origin_entry(&entry),
                    "{:?}",
                    entry
                );
                prop_assert_eq!(
                    parse_origins(&list).ok(),
                    oracle::origin_list(&list),
                    "{:?}",
                    list
                );
                Ok(())
            },
        );
    }

    /// Kept query parameters: refused, or kept once each in the order
    /// given, as docs/api.md says.
    #[test]
    fn kept_parameters_follow_the_documented_rule() {
        let name = prop_oneof![
            4 => "[A-Za-z0-9_.-]{1,8}",
            1 => edited("[a-z]{1,8}".prop_map(String::from), " +=&é\u{0}%"),
            1 => (60usize..68).prop_map(|n| "k".repeat(n)),
            1 => Just(String::new()),
        ];
        let names = prop_oneof![
            4 => prop::collection::vec(name.clone(), 0..5),
            1 => prop::collection::vec(name, 7..10),
        ];
        check(
            "kept_parameters_follow_the_documented_rule",
            names,
            |names| {
                prop_assert_eq!(
                    parse_kept_params(&names).ok(),
                    oracle::kept_params(&names),
                    "{:?}",
                    names
                );
                Ok(())
            },
        );
    }

    /// Import documents: refused, or read as the shape in docs/api.md says,
    /// every site, hour, page and day exactly, in order.
    #[test]
    fn import_documents_follow_the_documented_shape() {
        check(
            "import_documents_follow_the_documented_shape",
            (import_body(), any::<bool>(), import_now()),
            |(body, replay, now)| {
                let read = parse_import(&body[..], replay, now).ok().map(|entries| {
                    entries
                        .into_iter()
                        .map(|e| oracle::ImportSite {
                            slug: e.slug.as_str().to_owned(),
                            name: e.name,
                            count: e.count,
                            hours: e.hours,
                            created_at: e.created_at,
                            pages: e.pages.map(|pages| {
                                pages
                                    .into_iter()
                                    .map(|p| oracle::ImportPage {
                                        page: p.page.as_str().to_owned(),
                                        count: p.count,
                                        days: p.days,
                                    })
                                    .collect()
                            }),
                        })
                        .collect::<Vec<_>>()
                });
                prop_assert_eq!(
                    read,
                    oracle::import(&body, replay, now),
                    "{} (replay: {}, now: {})",
                    String::from_utf8_lossy(&body),
                    replay,
                    now
                );
                Ok(())
            },
        );
    }

    /// A session cookie opens the dashboard exactly when it is, byte for
    /// byte, a value sign-in wrote with this token, and it is within its
    /// 7 days: any other spelling of it is refused, so that signing out
    /// (which revokes the value) cannot be undone by respelling it.
    #[test]
    fn session_cookies_are_exactly_what_sign_in_wrote() {
        let inputs = (
            "[!-~]{1,24}",
            prop::option::weighted(0.1, "[!-~]{1,24}"),
            prop_oneof![
                4 => -(SESSION_SECS as i64) + 1..=0,
                1 => -(SESSION_SECS as i64) - 2..=-(SESSION_SECS as i64) + 2,
                1 => 0i64..=3,
            ],
            tamper(),
        );
        check(
            "session_cookies_are_exactly_what_sign_in_wrote",
            inputs,
            |(token, other, issued, tamper)| {
                let now: u64 = 1_800_000_000;
                let issued_at = now.checked_add_signed(issued).unwrap();
                let written = session_value(&token, issued_at);
                let sent = tampered(&written, &tamper);
                let key = other.clone().unwrap_or_else(|| token.clone());
                let expiry = issued_at + SESSION_SECS;
                let expected =
                    (sent == written && key == token && issued_at <= now && now < expiry)
                        .then_some(expiry);
                prop_assert_eq!(
                    session_expiry(&key, &sent, now),
                    expected,
                    "{:?} (written {:?})",
                    sent,
                    written
                );
                Ok(())
            },
        );
    }

    /// `If-None-Match`: `*` or a tag that is the asset's, weakly compared.
    #[test]
    fn entity_tags_compare_weakly() {
        let tag = prop_oneof![
            Just("\"c0ffee\"".to_owned()),
            Just("W/\"c0ffee\"".to_owned()),
            Just("w/\"c0ffee\"".to_owned()),
            Just("c0ffee".to_owned()),
            Just("*".to_owned()),
            Just("\"c0ffee\" ".to_owned()),
            Just("\"C0FFEE\"".to_owned()),
            "\"[0-9a-f]{0,6}\"",
            "[ -~]{0,10}",
        ];
        let header = prop_oneof![
            6 => (prop::collection::vec(tag, 0..4), prop::sample::select(vec![",", ", ", " ,\t"]))
                .prop_map(|(tags, sep)| tags.join(sep).into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..16),
        ];
        check(
            "entity_tags_compare_weakly",
            prop::collection::vec(header, 0..3),
            |headers| {
                let mut map = HeaderMap::new();
                let mut sent = Vec::new();
                for h in &headers {
                    if let Ok(v) = HeaderValue::from_bytes(h) {
                        map.append("if-none-match", v);
                        sent.push(h.clone());
                    }
                }
                prop_assert_eq!(
                    if_none_match(&map, "\"c0ffee\""),
                    oracle::if_none_match(&sent, "\"c0ffee\""),
                    "{:?}",
                    map
                );
                Ok(())
            },
        );
    }

    /// Any request: an answer below 500 (503 only if the store were down,
    /// which it is not here), and a JSON error body on every API error.
    #[test]
    fn no_request_gets_a_server_error() {
        check(
            "no_request_gets_a_server_error",
            (method(), path(), headers(), body()),
            |(method, path, headers, body)| {
                let mut request = Request::builder().method(method.clone()).uri(&path);
                for (name, value) in &headers {
                    if let Ok(value) = HeaderValue::from_bytes(value) {
                        request = request.header(*name, value);
                    }
                }
                let answer = send_to(scratch_app(), request.body(Body::from(body)).unwrap());
                let status = answer.status;
                prop_assert!(
                    status.as_u16() < 500,
                    "{method} {path} with {headers:?}: {status}"
                );
                if path.starts_with("/api/") && status.is_client_error() && method != Method::HEAD {
                    let error = answer.json()?;
                    prop_assert!(error["error"]["code"].is_string(), "{path}: {error}");
                }
                Ok(())
            },
        );
    }

    /// A hit counts only from a page whose host the site allows: the host
    /// of `Origin`, else of `Referer`, against the site's list (a listed
    /// host on any port, a listed `host:port` on that one); a bot's hit
    /// is judged the same way.
    #[test]
    fn hits_count_only_from_allowed_pages() {
        #[derive(Debug, Clone)]
        enum From {
            Url {
                scheme: &'static str,
                user: &'static str,
                host: &'static str,
                port: Option<u16>,
                path: String,
            },
            Null,
            Garbage(String),
        }
        let url = (
            prop::sample::select(vec!["https", "http", "HTTPS"]),
            prop::sample::select(vec!["", "", "", "user@", "u:p@"]),
            prop::sample::select(vec![
                "example.com",
                "EXAMPLE.com",
                "shop.example.com",
                "evil.com",
                "example.com.evil.net",
                "sub.example.com",
                "127.0.0.1",
                "127.0.0.2",
                "[::1]",
                "secure.example.org",
                "Secure.Example.ORG",
                "xn--caf-dma.example",
            ]),
            prop::option::weighted(
                0.4,
                prop::sample::select(vec![80u16, 443, 3000, 8443, 9999]),
            ),
            "(/[a-z]{0,5}){0,2}(\\?[a-z=]{0,5})?",
        )
            .prop_map(|(scheme, user, host, port, path)| From::Url {
                scheme,
                user,
                host,
                port,
                path,
            });
        let from = prop_oneof![
            6 => url,
            1 => Just(From::Null),
            1 => "[a-z]{1,5} [a-z]{1,5}".prop_map(From::Garbage),
        ];
        let inputs = (
            prop::sample::select(vec!["listed", "blog"]),
            prop::option::weighted(0.6, from.clone()),
            prop::option::weighted(0.6, from),
            any::<bool>(),
        );
        let listed = oracle::origin_list(&app().listed).unwrap();
        check(
            "hits_count_only_from_allowed_pages",
            inputs,
            |(site, origin, referer, bot)| {
                let text = |f: &From| match f {
                    From::Url {
                        scheme,
                        user,
                        host,
                        port,
                        path,
                    } => {
                        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                        format!("{scheme}://{user}{host}{port}{path}")
                    }
                    From::Null => "null".to_owned(),
                    From::Garbage(g) => g.clone(),
                };
                let authority = |f: &From| match f {
                    From::Url { host, port, .. } => {
                        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                        Some(format!("{host}{port}").to_ascii_lowercase())
                    }
                    From::Null => Some("null".to_owned()),
                    From::Garbage(_) => None,
                };
                let mut request = Request::post(format!("/api/v1/sites/{site}/hits"));
                if let Some(o) = &origin {
                    request = request.header("origin", text(o));
                }
                if let Some(r) = &referer {
                    request = request.header("referer", text(r));
                }
                if bot {
                    request = request.header(
                        "user-agent",
                        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                    );
                }
                let answer = send(request.body(Body::empty()).unwrap());
                let page = origin.as_ref().or(referer.as_ref()).map(authority);
                let list: &[String] = if site == "listed" { &listed } else { &[] };
                let allowed = oracle::page_allowed(list, page.as_ref().map(Option::as_deref));
                if allowed {
                    prop_assert_eq!(
                        answer.status,
                        StatusCode::OK,
                        "{:?} / {:?} on {}",
                        origin,
                        referer,
                        site
                    );
                } else {
                    prop_assert_eq!(
                        answer.status,
                        StatusCode::FORBIDDEN,
                        "{:?} / {:?} on {}",
                        origin,
                        referer,
                        site
                    );
                    prop_assert_eq!(error_code(&answer)?, "origin_not_allowed");
                }
                Ok(())
            },
        );
    }

    /// An admin action is allowed exactly when `Authorization` is `Bearer`
    /// (any case), spaces, and the token exactly; else a 401 that says
    /// whether a token was read.
    #[test]
    fn the_admin_token_is_read_from_bearer_exactly() {
        let scheme = prop::sample::select(vec![
            "Bearer", "bearer", "BEARER", "Basic", "Bearer:", "", "Token",
        ]);
        let spaces = prop::sample::select(vec![" ", "  ", "", "\t", " \t"]);
        let token = prop_oneof![
            4 => Just(TOKEN.to_owned()),
            2 => edited(Just(TOKEN.to_owned()), " \ta-A.é"),
            1 => Just(format!("{TOKEN} ")),
            1 => Just(format!("\"{TOKEN}\"")),
            1 => "[!-~]{0,20}",
        ];
        let value = prop_oneof![
            6 => (scheme, spaces, token).prop_map(|(s, sp, t)| format!("{s}{sp}{t}").into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..24),
        ];
        check(
            "the_admin_token_is_read_from_bearer_exactly",
            prop::option::weighted(0.95, value),
            |value| {
                let value = value.filter(|v| HeaderValue::from_bytes(v).is_ok());
                let mut request = Request::get("/api/v1/sites");
                if let Some(v) = &value {
                    request = request.header("authorization", HeaderValue::from_bytes(v).unwrap());
                }
                let answer = send(request.body(Body::empty()).unwrap());
                match value.as_deref().and_then(oracle::bearer) {
                    Some(t) if t == TOKEN => prop_assert_eq!(answer.status, StatusCode::OK),
                    Some(_) => {
                        prop_assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", value);
                        prop_assert_eq!(error_code(&answer)?, "invalid_token");
                    }
                    None => {
                        prop_assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", value);
                        prop_assert_eq!(error_code(&answer)?, "unauthorized");
                    }
                }
                Ok(())
            },
        );
    }

    /// The request id echoed is the one sent when that is 1 to 128
    /// visible characters, else a new one of 32 hex digits.
    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let id = prop_oneof![
            4 => "[!-~]{1,40}".prop_map(String::into_bytes),
            1 => "[!-~]{126,130}".prop_map(String::into_bytes),
            1 => "[ -~]{0,10}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..12),
            1 => Just(b"abc\xe9".to_vec()),
        ];
        check(
            "request_ids_are_kept_only_when_sane",
            prop::collection::vec(id, 0..3),
            |ids| {
                let ids: Vec<Vec<u8>> = ids
                    .into_iter()
                    .filter(|v| HeaderValue::from_bytes(v).is_ok())
                    .collect();
                let mut request = Request::get("/healthz");
                for id in &ids {
                    request = request.header("x-request-id", HeaderValue::from_bytes(id).unwrap());
                }
                let answer = send(request.body(Body::empty()).unwrap());
                prop_assert_eq!(answer.status, StatusCode::OK);
                let echoed = answer
                    .headers
                    .get("x-request-id")
                    .map(|v| v.as_bytes().to_vec());
                match ids.first() {
                    Some(first) if oracle::request_id(first) => {
                        prop_assert_eq!(echoed.as_deref(), Some(&first[..]));
                    }
                    first => {
                        let echoed = echoed.unwrap_or_default();
                        let new = echoed.len() == 32
                            && echoed
                                .iter()
                                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
                        prop_assert!(
                            new,
                            "{:?} for {:?}",
                            String::from_utf8_lossy(&echoed),
                            first
                        );
                        prop_assert!(first.is_none_or(|f| *f != echoed));
                    }
                }
                Ok(())
            },
        );
    }

    /// A series' parameters: refused with 400, or the range docs/api.md
    /// describes, exactly, with one point per step.
    #[test]
    fn series_ranges_follow_the_documented_rule() {
        let instant = prop_oneof![
            3 => (0i64..253_402_300_800).prop_map(format_timestamp),
            2 => (0i64..253_402_300_800).prop_map(format_date),
            2 => (1_790_000_000i64..1_800_000_000).prop_map(format_timestamp),
            2 => instant_text(),
        ];
        let key = prop_oneof![
            8 => prop::sample::select(vec!["from", "to", "step", "format"]).prop_map(str::to_owned),
            1 => prop::sample::select(vec!["fr%6Fm", "t%6F", "x", "From", "days"]).prop_map(str::to_owned),
        ];
        let value = prop_oneof![
            4 => instant.prop_map(|i| percent(&i)),
            2 => prop::sample::select(vec!["hour", "day", "Hour", "week", "json", "csv", "xml", "", "ho%75r", "cs%76"]).prop_map(str::to_owned),
            1 => query_piece(),
        ];
        let pairs = prop::collection::vec((key, value), 0..5);
        check("series_ranges_follow_the_documented_rule", pairs, |pairs| {
            let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let uri = format!("/api/v1/sites/blog/series?{}", query.join("&"));
            let before = std::time::SystemTime::now();
            let answer = send(Request::get(&uri).body(Body::empty()).unwrap());
            let after = std::time::SystemTime::now();
            let decoded: Vec<(String, String)> = oracle::query_pairs(&query.join("&"))
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        String::from_utf8_lossy(&oracle::percent_decode(&v.replace('+', " ")))
                            .into_owned(),
                    )
                })
                .collect();
            let get = |name: &str| {
                decoded
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let known = ["from", "to", "step", "format", "page"];
            let shape_ok = decoded.iter().enumerate().all(|(i, (k, _))| {
                known.contains(&k.as_str()) && !decoded[..i].iter().any(|(other, _)| other == k)
            });
            let step = match get("step") {
                None | Some("hour") => Some(3600),
                Some("day") => Some(86_400),
                Some(_) => None,
            };
            let format_ok = matches!(get("format"), None | Some("json") | Some("csv"));
            let from = get("from").map(oracle::instant);
            let to = get("to").map(oracle::instant);
            let read_ok =
                shape_ok && step.is_some() && format_ok && from != Some(None) && to != Some(None);
            let secs = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
            };
            let ranges: Vec<Option<(i64, i64)>> = if read_ok {
                [secs(before), secs(after)]
                    .iter()
                    .map(|now| oracle::range(step.unwrap(), from.flatten(), to.flatten(), *now))
                    .collect()
            } else {
                vec![None]
            };
            if ranges.iter().all(Option::is_none) {
                prop_assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", uri);
                prop_assert_eq!(error_code(&answer)?, "invalid_query");
                return Ok(());
            }
            prop_assert_eq!(answer.status, StatusCode::OK, "{}", uri);
            let step = step.unwrap();
            let (from, to, points) = if get("format") == Some("csv") {
                let text = String::from_utf8_lossy(&answer.body).into_owned();
                let mut lines = text.lines();
                prop_assert_eq!(lines.next(), Some("t,hits"));
                let times: Vec<i64> = lines
                    .map(|l| oracle::instant(l.split(',').next().unwrap_or("")).unwrap_or(-1))
                    .collect();
                let first = times.first().copied().unwrap_or(-1);
                (first, first + step * times.len() as i64, times)
            } else {
                let body = answer.json()?;
                let read =
                    |v: &serde_json::Value| oracle::instant(v.as_str().unwrap_or("")).unwrap_or(-1);
                let points: Vec<i64> = body["points"]
                    .as_array()
                    .map(|p| p.iter().map(|p| read(&p["t"])).collect())
                    .unwrap_or_default();
                (read(&body["from"]), read(&body["to"]), points)
            };
            prop_assert!(
                ranges.contains(&Some((from, to))),
                "{}: {}..{}, the rule says {:?}",
                uri,
                from,
                to,
                ranges
            );
            let steps: Vec<i64> = (0..points.len() as i64).map(|i| from + i * step).collect();
            prop_assert_eq!(points, steps, "{}", uri);
            Ok(())
        });
    }

    /// A new site's body: refused with 400, or created with exactly the
    /// name, count and normalised lists its rules give.
    #[test]
    fn new_sites_follow_their_documented_rules() {
        let name = prop_oneof![
            4 => "[ -~]{1,20}".prop_map(Json::Str),
            1 => (198usize..203).prop_map(|n| Json::Str("n".repeat(n))),
            1 => edited("[a-z]{0,5}".prop_map(String::from), "\u{0}\u{7}\u{85}é ").prop_map(Json::Str),
            1 => Just(Json::Int(5)),
        ];
        let count = prop_oneof![
            4 => json_whole(),
            1 => prop::sample::select(vec![9_007_199_254_740_991i128, 9_007_199_254_740_992]).prop_map(Json::Int),
        ];
        let strings = |s: BoxedStrategy<String>, n: std::ops::Range<usize>| {
            prop_oneof![
                9 => prop::collection::vec(s, n).prop_map(|v| Json::Arr(v.into_iter().map(Json::Str).collect())),
                1 => Just(Json::Str("example.com".into())),
            ]
        };
        let origins = prop_oneof![
            4 => strings(origin_text().boxed(), 0..4),
            1 => strings("[a-z]{1,4}\\.test".boxed(), 31..34),
        ];
        let keep = strings("[A-Za-z0-9_.-]{1,4}|[a-z]{0,3}[ +é]".boxed(), 0..10);
        let inputs = (
            prop::option::weighted(0.5, name),
            prop::option::weighted(0.5, count),
            prop::option::weighted(0.5, origins),
            prop::option::weighted(0.5, keep),
            shape(),
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        check(
            "new_sites_follow_their_documented_rules",
            inputs,
            |(name, count, origins, keep, (s, at))| {
                let slug = format!("fz{}", NEXT.fetch_add(1, Ordering::Relaxed));
                let mut fields = vec![("slug", Json::Str(slug.clone()))];
                fields.extend(name.clone().map(|v| ("name", v)));
                fields.extend(count.clone().map(|v| ("count", v)));
                fields.extend(origins.clone().map(|v| ("origins", v)));
                fields.extend(keep.clone().map(|v| ("keep_params", v)));
                let body = shaped(fields, s, at).text();
                let answer = send(
                    Request::post("/api/v1/sites")
                        .header("authorization", format!("Bearer {TOKEN}"))
                        .header("content-type", "application/json")
                        .body(Body::from(body.clone()))
                        .unwrap(),
                );
                let strings_of = |v: &Json| match v {
                    Json::Arr(items) => items
                        .iter()
                        .map(|i| match i {
                            Json::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect::<Option<Vec<String>>>(),
                    _ => None,
                };
                let expected = (|| {
                    let Json::Obj(sent) = Json::read(body.as_bytes())? else {
                        return None;
                    };
                    let keys: Vec<&str> = sent.iter().map(|(k, _)| k.as_str()).collect();
                    let known = ["slug", "name", "count", "origins", "keep_params"];
                    let once = keys
                        .iter()
                        .enumerate()
                        .all(|(i, k)| known.contains(k) && !keys[..i].contains(k));
                    if !once || !keys.contains(&"slug") {
                        return None;
                    }
                    let get = |k: &str| sent.iter().find(|(key, _)| key == k).map(|(_, v)| v);
                    let name = match get("name") {
                        None => slug.clone(),
                        Some(Json::Str(n)) => {
                            let chars = n.chars().count();
                            if !(1..=200).contains(&chars) || n.chars().any(oracle::is_control) {
                                return None;
                            }
                            n.clone()
                        }
                        Some(_) => return None,
                    };
                    let count = match get("count") {
                        None => 0,
                        Some(Json::Int(n)) if (0..=9_007_199_254_740_991).contains(n) => *n as i64,
                        Some(_) => return None,
                    };
                    let origins = match get("origins") {
                        None => vec![],
                        Some(v) => oracle::origin_list(&strings_of(v)?)?,
                    };
                    let keep = match get("keep_params") {
                        None => vec![],
                        Some(v) => oracle::kept_params(&strings_of(v)?)?,
                    };
                    Some(serde_json::json!({
                        "slug": slug, "name": name, "count": count, "pages": 0,
                        "origins": origins, "keep_params": keep,
                        // The settings a body leaves out: the instance's
                        // default (private) and off.
                        "public": false, "require_origin": false, "trailing_slash": "keep", "aliases": [],
                    }))
                })();
                match expected {
                    None => prop_assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", body),
                    Some(expected) => {
                        prop_assert_eq!(
                            answer.status,
                            StatusCode::CREATED,
                            "{}: {}",
                            body,
                            String::from_utf8_lossy(&answer.body)
                        );
                        let mut site = answer.json()?;
                        prop_assert!(
                            site["created_at"]
                                .as_str()
                                .and_then(oracle::instant)
                                .is_some()
                        );
                        site.as_object_mut().unwrap().remove("created_at");
                        prop_assert_eq!(site, expected, "{}", body);
                    }
                }
                Ok(())
            },
        );
    }

    /// The dashboard opens exactly when the first `tally_session` cookie
    /// of the request is a session sign-in wrote, unchanged.
    #[test]
    fn the_dashboard_reads_its_session_cookie_exactly() {
        let other = prop_oneof![
            Just("theme=dark".to_owned()),
            Just("tally_session=".to_owned()),
            Just("Tally_session=SESSION".to_owned()),
            Just("tally_sessionx=SESSION".to_owned()),
            Just("tally_session=\"SESSION\"".to_owned()),
            Just("tally_session=SESSION".to_owned()),
            "[a-z_]{1,8}=[!-:<-~]{0,10}",
        ];
        let cookie = prop_oneof![
            2 => tamper().prop_map(|t| (true, t, String::new())),
            3 => other.prop_map(|o| (false, Tamper::Nothing, o)),
        ];
        let header = (
            prop::collection::vec(cookie, 0..4),
            prop::sample::select(vec!["; ", ";"]),
        );
        check(
            "the_dashboard_reads_its_session_cookie_exactly",
            prop::collection::vec(header, 0..3),
            |headers| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let session = session_value(TOKEN, now);
                let mut request = Request::get("/dashboard");
                let mut pairs: Vec<String> = Vec::new();
                for (cookies, sep) in &headers {
                    let written: Vec<String> = cookies
                        .iter()
                        .map(|(ours, t, other)| {
                            if *ours {
                                format!("tally_session={}", tampered(&session, t))
                            } else {
                                other.replace("SESSION", &session)
                            }
                        })
                        .collect();
                    pairs.extend(written.iter().cloned());
                    request = request.header("cookie", written.join(sep));
                }
                let answer = send(request.body(Body::empty()).unwrap());
                // Pairs are separated by `;`, with optional whitespace
                // around each.
                let first = pairs
                    .iter()
                    .flat_map(|p| p.split(';'))
                    .filter_map(|p| p.trim_matches([' ', '\t']).split_once('='))
                    .find(|(name, _)| *name == "tally_session")
                    .map(|(_, value)| value);
                if first == Some(session.as_str()) {
                    prop_assert_eq!(answer.status, StatusCode::OK, "{:?}", pairs);
                } else {
                    prop_assert_eq!(answer.status, StatusCode::SEE_OTHER, "{:?}", pairs);
                    prop_assert!(
                        answer
                            .header("location")
                            .is_some_and(|l| l.starts_with("/dashboard/login?next="))
                    );
                }
                Ok(())
            },
        );
    }

    /// After signing in, the browser goes to the page it asked for when
    /// that is a dashboard page, else to the dashboard: never to another
    /// site, however the address is written.
    #[test]
    fn sign_in_returns_only_to_dashboard_pages() {
        let next = prop_oneof![
            4 => (
                prop::sample::select(vec!["/dashboard", "/dashboard/", "/dashboard?", "/dashboardx", "/Dashboard", "dashboard", "//evil.example/dashboard", "https://evil.example/dashboard", "/\\evil.example", ""]),
                "[!-~]{0,12}",
            ).prop_map(|(a, b)| format!("{a}{b}")),
            2 => prop::sample::select(vec![
                "/dashboard//evil.example", "/dashboard/..//evil.example", "/dashboard/\\\\evil.example",
                "/dashboard/sites/blog?page=/x", "/dashboard/\t/", "/dashboard/ x", "/dashboard/%2F%2Fevil.example",
                "/dashboard/\u{e9}", "/dashboard\r\nSet-Cookie: x=1", "/dashboard@evil.example", "/dashboard/../..",
            ]).prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        check(
            "sign_in_returns_only_to_dashboard_pages",
            prop::option::weighted(0.95, next),
            |next| {
                let mut form = format!("token={}", percent(TOKEN));
                if let Some(n) = &next {
                    form.push_str(&format!("&next={}", percent(n)));
                }
                let answer = send(
                    Request::post("/dashboard/login")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("sec-fetch-site", "same-origin")
                        .body(Body::from(form))
                        .unwrap(),
                );
                prop_assert_eq!(answer.status, StatusCode::SEE_OTHER, "{:?}", next);
                let location = answer.header("location").unwrap_or_default().to_owned();
                prop_assert_eq!(
                    location.as_str(),
                    oracle::next_page(next.as_deref()),
                    "{:?}",
                    next
                );
                let base = reqwest::Url::parse("https://tally.example/dashboard/login").unwrap();
                let goes = base
                    .join(&location)
                    .map_err(|e| TestCaseError::fail(format!("{location:?}: {e}")))?;
                prop_assert_eq!(goes.origin(), base.origin(), "{:?} goes to {}", next, goes);
                Ok(())
            },
        );
    }
}

// ---------------------------------------------------------------------
// Requests shaped like tally's routes, with hostile fillings.

/// Paths shaped like tally's routes, with hostile fillings.
fn path() -> impl Strategy<Value = String> {
    let slug = prop_oneof![
        Just("blog".to_owned()),
        Just("default".to_owned()),
        Just("docs.example.org".to_owned()),
        Just("listed".to_owned()),
        "[a-z0-9._-]{0,70}",
        any::<String>().prop_map(|s| percent(&s)),
    ];
    let route = prop_oneof![
        Just("/"),
        Just("/resetcounter"),
        Just("/api/v1/sites"),
        Just("/api/v1/sites/{}"),
        Just("/api/v1/sites/{}/hits"),
        Just("/api/v1/sites/{}/count"),
        Just("/api/v1/sites/{}/uniques"),
        Just("/api/v1/sites/{}/reset"),
        Just("/api/v1/sites/{}/series"),
        Just("/api/v1/sites/{}/pages"),
        Just("/api/v1/sites/{}/pages/count"),
        Just("/api/v1/sites/{}/breakdown/referrer"),
        Just("/api/v1/sites/{}/breakdown/{}"),
        Just("/count/{}.gif"),
        Just("/api/event"),
        Just("/api/send"),
        Just("/count"),
        Just("/count/{}"),
        Just("/api/v1/export"),
        Just("/api/v1/import"),
        Just("/api/v1/openapi.json"),
        Just("/badge/{}.svg"),
        Just("/badge/{}"),
        Just("/dashboard"),
        Just("/dashboard/{}"),
        Just("/dashboard/sites/{}"),
        Just("/dashboard/login"),
        Just("/dashboard/logout"),
        Just("/static/{}"),
        Just("/count.js"),
        Just("/healthz"),
        Just("/readyz"),
        Just("/metrics"),
    ];
    let key = prop_oneof![
        Just("from"),
        Just("to"),
        Just("step"),
        Just("format"),
        Just("days"),
        Just("readonly"),
        Just("label"),
        Just("color"),
        Just("label_color"),
        Just("style"),
        Just("next"),
        Just("page"),
        Just("limit"),
        Just("offset"),
        Just("hours"),
        Just("referrer"),
        Just("p"),
        Just("r"),
        Just("s"),
        Just("q"),
        Just("b"),
        Just("x"),
    ];
    let value = prop_oneof![
        Just("/posts/hello".to_owned()),
        "/[ -~]{0,40}".prop_map(|s| percent(&s)),
        Just("hour".to_owned()),
        Just("day".to_owned()),
        Just("csv".to_owned()),
        Just("1".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("1970-01-01".to_owned()),
        "[0-9]{1,25}",
        "-?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}(T[0-9:.]{0,14}(Z|[+-][0-9:]{0,6}))?",
        query_piece(),
    ];
    let query = prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    });
    (route, slug, query).prop_map(|(route, slug, query)| {
        let path = route.replace("{}", &slug);
        if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        }
    })
}

/// JSON bodies near what tally reads (sites, counts, hits, import
/// documents), and bytes that are not JSON at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let scalar = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        Just(serde_json::Value::from(9_007_199_254_740_991_i64)),
        Just(serde_json::Value::from(9_007_199_254_740_992_i64)),
        "[a-z0-9._-]{0,70}".prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    let json = scalar.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("slug".to_owned()),
            Just("name".to_owned()),
            Just("count".to_owned()),
            Just("sites".to_owned()),
            Just("hours".to_owned()),
            Just("base_count".to_owned()),
            Just("version".to_owned()),
            Just("page".to_owned()),
            Just("origins".to_owned()),
            Just("keep_params".to_owned()),
            "[a-z_]{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        3 => json.prop_map(|v| v.to_string().into_bytes()),
        // Duplicate keys, which a JSON value cannot hold.
        1 => "[a-z]{1,8}".prop_map(|s| format!("{{\"slug\":\"{s}\",\"slug\":\"x{s}\"}}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        2 => import_body(),
        1 => page_text().prop_map(|p| serde_json::json!({ "page": p }).to_string().into_bytes()),
        2 => peer_body(),
    ]
}

/// Bodies as other counters' trackers send them (Plausible's event,
/// Umami's), their fields drawn from near what tally reads and from
/// anything at all.
fn peer_body() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        Just("pageview".to_owned()),
        Just("https://blog.example/a?utm_source=x".to_owned()),
        Just("/a".to_owned()),
        Just("blog,docs.example.org".to_owned()),
        Just("1920x1080".to_owned()),
        Just(String::new()),
        "[a-z0-9._,/:-]{0,40}",
        any::<String>(),
    ];
    let field = prop_oneof![
        text.clone().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    let plausible = prop::collection::btree_map(
        prop::sample::select(vec![
            "n", "u", "d", "r", "w", "name", "url", "domain", "p", "h",
        ]),
        field.clone(),
        0..6,
    )
    .prop_map(|m| serde_json::json!(m));
    let umami = (
        prop::sample::select(vec!["event", "identify", ""]),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "website", "url", "referrer", "screen", "name", "hostname",
            ]),
            field,
            0..6,
        ),
    )
        .prop_map(|(kind, payload)| serde_json::json!({"type": kind, "payload": payload}));
    prop_oneof![plausible, umami].prop_map(|v| v.to_string().into_bytes())
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(format!("Bearer {TOKEN}").into_bytes()),
        Just(b"application/json".to_vec()),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        forwarded_header(),
        "tally_session=[0-9a-f.]{0,90}".prop_map(String::into_bytes),
        origin_text().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    let name = prop_oneof![
        Just("authorization"),
        Just("content-type"),
        Just("cookie"),
        Just("x-forwarded-for"),
        Just("x-real-ip"),
        Just("x-request-id"),
        Just("user-agent"),
        Just("origin"),
        Just("referer"),
        Just("if-none-match"),
        Just("accept"),
        Just("sec-fetch-site"),
    ];
    prop::collection::vec((name, header_value()), 0..6)
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::PATCH),
        Just(Method::OPTIONS),
    ]
}

// ---------------------------------------------------------------------
// The runner's own promise, the corpus, and what the properties found.

/// A seed and a chunk number make the same cases every time, and another
/// seed other cases: what makes `FUZZ_SEED` a replay.
#[test]
fn a_seed_replays_the_same_cases() {
    let cases = |master: u64, chunk: u64| {
        let seen = std::cell::RefCell::new(Vec::new());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &chunk_seed(master, "replay", chunk));
        let config = Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        };
        TestRunner::new_with_rng(config, rng)
            .run(&(page_text(), keep_names(), import_body()), |case| {
                seen.borrow_mut().push(format!("{case:?}"));
                Ok(())
            })
            .unwrap();
        seen.into_inner()
    };
    let first = cases(0x5eed, 3);
    assert_eq!(first.len(), 64);
    assert_eq!(cases(0x5eed, 3), first);
    assert_ne!(cases(0x5eed, 4), first);
    assert_ne!(cases(0x5eee, 3), first);
}

/// Undoes the corpus files' escapes: `\\`, `\t`, `\n`, `\r`, `\xNN` (a
/// byte), `\u{N}` (a character); a line that is exactly `""` is the empty
/// input.
fn unescape(line: &str) -> Vec<u8> {
    if line == "\"\"" {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let after = &rest[i + 1..];
        let (bytes, used): (Vec<u8>, usize) = match after.as_bytes().first() {
            Some(b'\\') => (vec![b'\\'], 1),
            Some(b't') => (vec![b'\t'], 1),
            Some(b'n') => (vec![b'\n'], 1),
            Some(b'r') => (vec![b'\r'], 1),
            Some(b'x') => (
                vec![u8::from_str_radix(&after[1..3], 16).expect("\\xNN")],
                3,
            ),
            Some(b'u') => {
                let end = after.find('}').expect("\\u{N}");
                let c = char::from_u32(u32::from_str_radix(&after[2..end], 16).expect("\\u{N}"))
                    .expect("a character");
                (c.to_string().into_bytes(), end + 1)
            }
            other => panic!("unknown escape \\{other:?} in {line:?}"),
        };
        out.extend_from_slice(&bytes);
        rest = &after[used..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

fn utf8(input: &[u8]) -> &str {
    std::str::from_utf8(input).expect("a text target's corpus line is UTF-8")
}

fn corpus_slug(input: &[u8]) -> Result<(), String> {
    let text = utf8(input);
    let parsed = Slug::parse(text).map(|s| s.as_str().to_owned()).ok();
    let expected = oracle::slug(text);
    (parsed == expected)
        .then_some(())
        .ok_or(format!("parsed {parsed:?}, the rule says {expected:?}"))
}

fn corpus_page(input: &[u8]) -> Result<(), String> {
    let text = utf8(input);
    let keep = vec!["lang".to_owned(), "id".to_owned()];
    let mut expected = None;
    for trailing_slash in [TrailingSlash::Merge, TrailingSlash::Keep] {
        let rules = SiteRules {
            keep_params: keep.clone(),
            trailing_slash,
            ..SiteRules::default()
        };
        let parsed = Page::parse(text, &rules)
            .map(|p| p.as_str().to_owned())
            .ok();
        expected = oracle::page(text, &keep, trailing_slash == TrailingSlash::Merge);
        if parsed != expected {
            return Err(format!(
                "parsed {parsed:?}, the rule says {expected:?} ({trailing_slash:?})"
            ));
        }
    }
    // Through the hits route: counted on that page, or a 400.
    let answer = send(
        Request::post("/api/v1/sites/kept/hits")
            .header("content-type", "application/json")
            .body(Body::from(serde_json::json!({ "page": text }).to_string()))
            .unwrap(),
    );
    let page = answer
        .json()
        .map_err(|e| e.to_string())?
        .get("page")
        .and_then(|p| p.as_str().map(str::to_owned));
    match expected {
        Some(name) if answer.status == StatusCode::OK && page.as_deref() == Some(&name) => Ok(()),
        None if answer.status == StatusCode::BAD_REQUEST => Ok(()),
        _ => Err(format!(
            "the hits route answered {} with page {page:?}",
            answer.status
        )),
    }
}

fn corpus_instant(input: &[u8]) -> Result<(), String> {
    let text = utf8(input);
    let (parsed, expected) = (parse_instant(text), oracle::instant(text));
    (parsed == expected)
        .then_some(())
        .ok_or(format!("parsed {parsed:?}, the rule says {expected:?}"))
}

fn corpus_origin(input: &[u8]) -> Result<(), String> {
    let text = utf8(input);
    let (parsed, expected) = (parse_origin(text).ok(), oracle::origin_entry(text));
    (parsed == expected)
        .then_some(())
        .ok_or(format!("parsed {parsed:?}, the rule says {expected:?}"))
}

/// A forwarding header from a trusted proxy: as `X-Forwarded-For`, then
/// as `X-Real-IP`.
fn corpus_forwarded(input: &[u8]) -> Result<(), String> {
    let value = HeaderValue::from_bytes(input).map_err(|e| e.to_string())?;
    let (trusted_text, trusted) = nets(0b0001_0011);
    let (real_text, real_from) = nets(0b0000_0001);
    let proxies = Proxies {
        trusted: trusted_text.parse().unwrap(),
        real_ip_from: real_text.parse().unwrap(),
    };
    let peer = Some("10.0.0.2".parse::<IpAddr>().unwrap());
    for header in ["x-forwarded-for", "x-real-ip"] {
        let mut headers = HeaderMap::new();
        headers.insert(header, value.clone());
        let origin = client_ip(peer, &headers, &proxies);
        let expected = if header == "x-real-ip" {
            oracle::client(peer, &[], Some(input), &trusted, &real_from)
        } else {
            oracle::client(peer, &[input.to_vec()], None, &trusted, &real_from)
        };
        if (origin.ip, origin.via_proxy) != expected {
            return Err(format!(
                "as {header}: {origin:?}, the rule says {expected:?}"
            ));
        }
    }
    Ok(())
}

fn corpus_import(input: &[u8]) -> Result<(), String> {
    for replay in [false, true] {
        let parsed = parse_import(input, replay, IMPORT_NOW).ok().map(|entries| {
            entries
                .into_iter()
                .map(|e| (e.slug.as_str().to_owned(), e.name, e.count, e.hours))
                .collect::<Vec<_>>()
        });
        let expected = oracle::import(input, replay, IMPORT_NOW).map(|sites| {
            sites
                .into_iter()
                .map(|s| (s.slug, s.name, s.count, s.hours))
                .collect::<Vec<_>>()
        });
        if parsed != expected {
            return Err(format!(
                "replay {replay}: parsed {parsed:?}, the rule says {expected:?}"
            ));
        }
    }
    Ok(())
}

/// A badge's query string, read as the badge route reads it.
fn corpus_badge(input: &[u8]) -> Result<(), String> {
    let query = utf8(input);
    let params: Vec<(String, String)> = oracle::query_pairs(query)
        .into_iter()
        .map(|(k, v)| {
            let v =
                String::from_utf8_lossy(&oracle::percent_decode(&v.replace('+', " "))).into_owned();
            (k, v)
        })
        .collect();
    let parsed = Options::parse(&params).ok().map(|o| (o.label, o.readonly));
    let expected = oracle::badge(&params).map(|b| (b.label, b.readonly));
    (parsed == expected)
        .then_some(())
        .ok_or(format!("parsed {parsed:?}, the rule says {expected:?}"))
}

fn corpus_bearer(input: &[u8]) -> Result<(), String> {
    let value = HeaderValue::from_bytes(input).map_err(|e| e.to_string())?;
    let answer = send(
        Request::get("/api/v1/sites")
            .header("authorization", value)
            .body(Body::empty())
            .unwrap(),
    );
    let expected = if oracle::bearer(input) == Some(TOKEN) {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    (answer.status == expected)
        .then_some(())
        .ok_or(format!("{}, the rule says {expected}", answer.status))
}

/// Every hand-picked hostile input of `tests/fuzz/corpus/`, one per line,
/// through its parser and the oracle.
#[test]
fn the_corpus_of_hostile_inputs_replays() {
    type Target = fn(&[u8]) -> Result<(), String>;
    let targets: [(&str, Target); 8] = [
        ("slugs", corpus_slug),
        ("pages", corpus_page),
        ("instants", corpus_instant),
        ("origins", corpus_origin),
        ("forwarded", corpus_forwarded),
        ("import", corpus_import),
        ("badges", corpus_badge),
        ("bearer", corpus_bearer),
    ];
    let dir = std::path::Path::new("tests/fuzz/corpus");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let named: Vec<String> = targets.iter().map(|(t, _)| format!("{t}.txt")).collect();
    assert_eq!(
        files,
        {
            let mut n = named.clone();
            n.sort();
            n
        },
        "every corpus file has a target"
    );
    let started = Instant::now();
    let mut cases = 0;
    let mut failures = Vec::new();
    for (target, check) in targets {
        let path = dir.join(format!("{target}.txt"));
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            cases += 1;
            if let Err(why) = check(&unescape(line)) {
                failures.push(format!("{}:{}: {line}: {why}", path.display(), n + 1));
            }
        }
    }
    let result = if failures.is_empty() { "ok" } else { "failed" };
    println!(
        "fuzz: corpus seed=- chunks=- cases={cases} seconds={:.1} result={result}",
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Found by the page-parameter property (then
/// `page_parameters_are_read_as_forms_are`, now
/// `page_parameters_are_read_as_they_stand`): `?%70age=/a` named no page
/// to the page reader while the query reader took it for `page`, so a
/// badge or a series named a page and got the site's. The value is taken
/// as it stands, for the page's rule to decode once.
#[test]
fn a_page_parameter_is_found_by_its_decoded_name() {
    let (mut parts, ()) = Request::get("/badge/blog.svg?%70age=/a%2Bb+c")
        .body(())
        .unwrap()
        .into_parts();
    let PageParam(page) =
        futures::executor::block_on(PageParam::from_request_parts(&mut parts, &())).unwrap();
    assert_eq!(page.as_deref(), Some("/a%2Bb+c"));
    let answer = send(
        Request::get("/api/v1/sites/blog/series?%70age=/a&step=day")
            .body(Body::empty())
            .unwrap(),
    );
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json().unwrap()["page"], "/a");
}

/// Found by `session_cookies_are_exactly_what_sign_in_wrote`: a session
/// cookie respelled (`+` or a zero before its expiry, its tag in upper
/// case, a `+` in a hex pair) was still taken, under another hash than
/// the one sign-out revokes, so a copy of a revoked cookie opened the
/// dashboard again.
#[test]
fn a_revoked_session_stays_revoked_however_it_is_spelled() {
    let dashboard = |cookie: &str| {
        send(
            Request::get("/dashboard")
                .header("cookie", format!("tally_session={cookie}"))
                .body(Body::empty())
                .unwrap(),
        )
        .status
    };
    let signed_in = send(
        Request::post("/dashboard/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(format!("token={TOKEN}")))
            .unwrap(),
    );
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let set = signed_in.header("set-cookie").unwrap();
    let value = set
        .strip_prefix("tally_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let (expiry, rest) = value.split_once('.').unwrap();
    let (id, tag) = rest.split_once('.').unwrap();
    let respelled = [
        format!("+{value}"),
        format!("0{value}"),
        format!("{expiry}.{id}.{}", tag.to_ascii_uppercase()),
        format!("{expiry}.{id}.+{}", &tag[1..]),
    ];
    assert_eq!(dashboard(&value), StatusCode::OK);
    for other in &respelled {
        assert_ne!(other, &value);
        assert_eq!(dashboard(other), StatusCode::SEE_OTHER, "{other}");
    }
    let signed_out = send(
        Request::post("/dashboard/logout")
            .header("cookie", format!("tally_session={value}"))
            .header("sec-fetch-site", "same-origin")
            .body(Body::empty())
            .unwrap(),
    );
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(dashboard(&value), StatusCode::SEE_OTHER);
    for other in &respelled {
        assert_eq!(dashboard(other), StatusCode::SEE_OTHER, "{other}");
    }
}
