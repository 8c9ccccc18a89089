//! One library, one process: `tally-bench-agents LIBRARY AGENTS [REGEXES]`
//! reads every user agent of the file AGENTS (one a line) through LIBRARY
//! (`woothee`, `uap`: the uap-core rules of the file REGEXES read by the
//! `ua-parser` crate, `iscrawl`: the crawler list as that crate matches it,
//! or `tally`: the same list as tally's bot filter matches it), again and again
//! until a million have been read, and prints one line:
//! `LIBRARY setup_ms rss_before_kb rss_ready_kb rss_after_kb ns_per_agent found`.

use std::time::Instant;

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

const READS: usize = 1_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, library, agents, rest @ ..] = args.as_slice() else {
        panic!("usage: tally-bench-agents LIBRARY AGENTS [REGEXES]");
    };
    let text = std::fs::read_to_string(agents).unwrap();
    let agents: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let before = rss_kb();
    let setup = Instant::now();
    let read: Box<dyn Fn(&str) -> bool> = match library.as_str() {
        "woothee" => {
            let parser = woothee::parser::Parser::new();
            Box::new(move |ua| parser.parse(ua).is_some_and(|r| r.name != "UNKNOWN"))
        }
        "uap" => {
            let file = std::fs::File::open(&rest[0]).unwrap();
            let regexes: ua_parser::Regexes = serde_yaml::from_reader(file).unwrap();
            let extractor = ua_parser::Extractor::try_from(regexes).unwrap();
            // The browser, the system and the device, as woothee reads them.
            Box::new(move |ua| {
                let (browser, _system, _device) = extractor.extract(ua);
                browser.is_some_and(|b| b.family != "Other")
            })
        }
        "iscrawl" => Box::new(|ua| iscrawl::crawler_info(ua).is_some()),
        "tally" => {
            let bots = tally::bots::Bots::new(true);
            Box::new(move |ua| bots.is_bot(Some(ua)))
        }
        other => panic!("no library {other}"),
    };
    // The first read builds what a library builds lazily.
    read(agents[0]);
    let setup_ms = setup.elapsed().as_millis();
    let ready = rss_kb();
    let started = Instant::now();
    let mut found = 0usize;
    for ua in agents.iter().cycle().take(READS) {
        found += usize::from(read(ua));
    }
    let per = started.elapsed().as_nanos() / READS as u128;
    println!(
        "{library} {setup_ms} {before} {ready} {} {per} {}",
        rss_kb(),
        found as f64 / READS as f64
    );
}
