//! Who read a page, as far as a request tells: the browser, system and
//! device its user agent names, and the country of its address.
//!
//! The user agent is read by `woothee`, whose rules are compiled into the
//! crate: no data file to ship or load, and a fifth of the time and a
//! twelfth of the memory of the uap-core rules (`bench/agents/run`; the
//! figures are in `bench/README.md`, "Reading user agents").
//! The country comes from a MaxMind-format database the operator provides
//! (`TALLY_GEOIP_DB`: GeoLite2 or GeoIP2 Country or City, DB-IP's lite
//! country database); without one every hit's country is `(unknown)`.
//! Neither the user agent nor the address is kept: only the values below.

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::domain::breakdown::{self, Dimension, Facets, NONE, UNKNOWN, Value};

/// What a counting request says of where its visit came from and who made
/// it, as the client sent it. Nothing of it is kept but the facets it
/// gives ([`Audience::facets`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Visit<'a> {
    /// The referrer the client names itself (the body's `referrer`, the
    /// pixel's `ref=`), checked as [`breakdown::referrer_host`] checks
    /// it; empty: none. Given, it is taken over the `Referer` header.
    pub referrer: Option<&'a str>,
    /// The `Referer` header.
    pub referer_header: Option<&'a str>,
    /// The page's address as sent, before its name is normalised: its
    /// campaign parameters.
    pub page: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub accept_language: Option<&'a str>,
    /// The screen's width in CSS pixels, checked.
    pub screen: Option<u32>,
    /// The client's address, as tally determines it; only its country is
    /// kept.
    pub client: Option<IpAddr>,
}

/// Reads what a request says about its reader.
pub struct Audience {
    agents: woothee::parser::Parser,
    /// User agents read lately, so that a reader's next hits (and other
    /// readers' with the same browser build) skip the parser.
    read: Mutex<AgentsRead>,
    countries: Option<maxminddb::Reader<Vec<u8>>>,
}

/// What a user agent names, as the breakdowns count it.
#[derive(Debug, Clone)]
struct Agent {
    browser: Option<&'static str>,
    /// The browser's family and major version (`Chrome 124`).
    version: Option<Arc<str>>,
    os: Option<&'static str>,
    /// The device, when the agent's category says it; else the screen's
    /// width does ([`device`]).
    device: Option<&'static str>,
}

/// The user agents read lately and what they named, by a keyed 128-bit
/// hash of the agent (so an entry's size does not grow with the agent's,
/// and no one can make two agents collide): at most two generations of
/// [`AGENTS_PER_GENERATION`]. A lookup that finds an agent in the older
/// one moves it to the newer; when the newer is full, the older is
/// dropped. Some 100 bytes an agent, under 4 MB in all. Reading a hit's
/// facets took some 27 000 instructions with the parse and 7 000 with a
/// lookup (the agents of `bench/wrk.lua`, under callgrind).
struct AgentsRead {
    keys: (u64, u64),
    new: HashMap<u128, Agent>,
    old: HashMap<u128, Agent>,
}

/// User agents per generation of [`AgentsRead`]: as many as a map of
/// 16 384 slots holds.
const AGENTS_PER_GENERATION: usize = 14 * 1024;

impl AgentsRead {
    fn new() -> Self {
        let mut seed = [0u8; 16];
        // Without the system's randomness the keys are fixed: collisions
        // could then be made, but cost only a mislabelled browser.
        let _ = getrandom::fill(&mut seed);
        AgentsRead {
            keys: (
                u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(seed[8..].try_into().unwrap_or_default()),
            ),
            new: HashMap::new(),
            old: HashMap::new(),
        }
    }

    fn key(&self, user_agent: &str) -> u128 {
        let mut h = siphasher::sip128::SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(user_agent.as_bytes());
        siphasher::sip128::Hasher128::finish128(&h).as_u128()
    }

    fn get(&mut self, key: u128) -> Option<Agent> {
        if let Some(agent) = self.new.get(&key) {
            return Some(agent.clone());
        }
        let agent = self.old.remove(&key)?;
        self.put(key, agent.clone());
        Some(agent)
    }

    fn put(&mut self, key: u128, agent: Agent) {
        if self.new.len() >= AGENTS_PER_GENERATION {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(key, agent);
    }
}

impl std::fmt::Debug for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audience")
            .field("countries", &self.countries.is_some())
            .finish()
    }
}

impl Audience {
    /// With the country database at `geoip`, if one is named: a file that
    /// cannot be read as one stops the start, naming the setting.
    pub fn new(geoip: Option<&Path>) -> anyhow::Result<Audience> {
        let countries = geoip
            .map(|path| {
                maxminddb::Reader::open_readfile(path).with_context(|| {
                    format!(
                        "TALLY_GEOIP_DB: {} is not a MaxMind-format database that can be read",
                        path.display()
                    )
                })
            })
            .transpose()?;
        Ok(Audience {
            agents: woothee::parser::Parser::new(),
            read: Mutex::new(AgentsRead::new()),
            countries,
        })
    }

    /// Whether a country database is loaded.
    pub fn has_countries(&self) -> bool {
        self.countries.is_some()
    }

    /// Every dimension of a visit. `own` says whether a host is the
    /// site's own ([`breakdown::is_own_host`]): a referrer from it is
    /// `(none)`, a reader moving between the site's pages.
    pub fn facets(&self, visit: &Visit<'_>, own: impl Fn(&str) -> bool) -> Facets {
        let mut facets = Facets::default();
        let referrer = match visit.referrer {
            Some(named) => breakdown::referrer_host(named).ok().flatten(),
            None => visit
                .referer_header
                .and_then(breakdown::referer_header_host),
        };
        facets.set(
            Dimension::Referrer,
            referrer
                .filter(|host| !own(host))
                .map_or(Value::Fixed(NONE), Value::from),
        );
        facets.set_campaign(visit.page.unwrap_or_default());
        self.read_agent(visit.user_agent, visit.screen, &mut facets);
        facets.set(
            Dimension::Country,
            visit
                .client
                .and_then(|ip| self.country(ip))
                .map_or(Value::Fixed(UNKNOWN), Value::from),
        );
        facets.set(
            Dimension::Language,
            visit
                .accept_language
                .and_then(breakdown::language)
                .map_or(Value::Fixed(UNKNOWN), Value::from),
        );
        facets
    }

    /// Sets the browser, its version, the system, the device and the
    /// screen from the user agent and the screen's width (if the client
    /// sent it).
    pub fn read_agent(&self, user_agent: Option<&str>, screen: Option<u32>, facets: &mut Facets) {
        let agent = user_agent
            .map(str::trim)
            .filter(|ua| !ua.is_empty())
            .and_then(|ua| self.agent(ua));
        let (browser, version, os, device) = match agent {
            Some(agent) => (
                agent.browser,
                agent.version,
                agent.os,
                agent.device.or_else(|| device("", "", "", screen)),
            ),
            None => (None, None, None, device("", "", "", screen)),
        };
        facets.set(Dimension::Browser, browser.unwrap_or(UNKNOWN));
        facets.set(
            Dimension::BrowserVersion,
            version.map_or(Value::Fixed(UNKNOWN), Value::from),
        );
        facets.set(Dimension::Os, os.unwrap_or(UNKNOWN));
        facets.set(Dimension::Device, device.unwrap_or(UNKNOWN));
        facets.set(
            Dimension::Screen,
            screen.map_or(UNKNOWN, breakdown::screen_class),
        );
    }

    /// What user agent `ua` (trimmed, not empty) names: from the agents
    /// read lately, else parsed (and remembered). `None` when the parser
    /// cannot read it.
    fn agent(&self, ua: &str) -> Option<Agent> {
        let lock = || self.read.lock().unwrap_or_else(|e| e.into_inner());
        let key = {
            let mut read = lock();
            let key = read.key(ua);
            if let Some(agent) = read.get(key) {
                return Some(agent);
            }
            key
        };
        // Parsed outside the lock: the parse is the slow part.
        let parsed = self.agents.parse(ua)?;
        // A crawler's, a feed reader's or a library's name (woothee's
        // "crawler" and "misc" categories) is no browser's.
        let browser = matches!(
            parsed.category,
            "pc" | "smartphone" | "mobilephone" | "appliance"
        )
        .then(|| browser_family(parsed.name))
        .flatten();
        let agent = Agent {
            browser,
            version: browser.map(|b| {
                match major(parsed.version) {
                    Some(major) => format!("{b} {major}"),
                    None => format!("{b} {UNKNOWN}"),
                }
                .into()
            }),
            os: os_family(parsed.os),
            // The screen is left out: what the agent says of the device
            // does not depend on it, and where it says nothing the
            // screen decides.
            device: device(parsed.category, parsed.os, ua, None),
        };
        lock().put(key, agent.clone());
        Some(agent)
    }

    /// The ISO 3166-1 alpha-2 code of the country `ip` is in, if the
    /// database has one for it.
    pub fn country(&self, ip: IpAddr) -> Option<Box<str>> {
        let reader = self.countries.as_ref()?;
        let found = reader.lookup(ip.to_canonical()).ok()?;
        let code: Option<&str> = found
            .decode_path(&maxminddb::path!["country", "iso_code"])
            .ok()
            .flatten();
        code.filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(|c| c.to_ascii_uppercase().into())
    }
}

/// The family a browser is counted under.
fn browser_family(name: &str) -> Option<&'static str> {
    Some(match name {
        "Chrome" => "Chrome",
        "Firefox" => "Firefox",
        "Safari" => "Safari",
        "Edge" => "Edge",
        "Opera" => "Opera",
        "Internet Explorer" => "Internet Explorer",
        "Vivaldi" => "Vivaldi",
        "SamsungBrowser" => "Samsung Internet",
        "Yandex Browser" => "Yandex Browser",
        "Webview" => "WebView",
        "Sleipnir" => "Sleipnir",
        "UNKNOWN" | "" => return None,
        _ => "Other",
    })
}

/// The major version of a browser's version (`125.0.1` is 125).
fn major(version: &str) -> Option<&str> {
    let major = version.split('.').next().unwrap_or_default();
    (!major.is_empty() && major.len() <= 6 && major.bytes().all(|b| b.is_ascii_digit()))
        .then_some(major)
}

/// The family an operating system is counted under.
fn os_family(os: &str) -> Option<&'static str> {
    Some(match os {
        "Windows Phone OS" => "Windows Phone",
        windows if windows.starts_with("Windows") => "Windows",
        "Mac OSX" | "Mac OS Classic" => "macOS",
        "iPhone" | "iPad" | "iPod" | "iOS" => "iOS",
        "Android" => "Android",
        "Linux" => "Linux",
        "ChromeOS" => "ChromeOS",
        "BSD" => "BSD",
        "UNKNOWN" | "" => return None,
        _ => "Other",
    })
}

/// `desktop`, `mobile` or `tablet`: from the user agent's category, where
/// a tablet is an iPad or an Android device that does not say `Mobile`;
/// else from the screen's width (under 600 CSS pixels a phone, under 1024
/// a tablet).
fn device(category: &str, os: &str, user_agent: &str, screen: Option<u32>) -> Option<&'static str> {
    match category {
        "pc" => Some("desktop"),
        "smartphone" if os == "iPad" => Some("tablet"),
        "smartphone" if os == "Android" && !user_agent.contains("Mobile") => Some("tablet"),
        "smartphone" | "mobilephone" => Some("mobile"),
        _ => screen.map(|width| match width {
            ..600 => "mobile",
            600..1024 => "tablet",
            _ => "desktop",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
        (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) \
        AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) \
        AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const CHROME_ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 14; SM-S918B) \
        AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const SAFARI_IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) \
        AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const EDGE_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
        (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51";
    const CHROME_ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) \
        AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const SAMSUNG: &str = "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 \
        (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36";

    /// What a new reader makes of `ua` and `screen`.
    fn read(ua: Option<&str>, screen: Option<u32>) -> Vec<String> {
        read_by(&Audience::new(None).unwrap(), ua, screen)
    }

    fn read_by(audience: &Audience, ua: Option<&str>, screen: Option<u32>) -> Vec<String> {
        let mut facets = Facets::default();
        audience.read_agent(ua, screen, &mut facets);
        [
            Dimension::Browser,
            Dimension::BrowserVersion,
            Dimension::Os,
            Dimension::Device,
            Dimension::Screen,
        ]
        .into_iter()
        .map(|d| facets.get(d).to_owned())
        .collect()
    }

    #[test]
    fn an_agent_read_again_names_what_its_parse_named() {
        let audience = Audience::new(None).unwrap();
        let agents = [
            Some(CHROME_WINDOWS),
            Some(SAFARI_IPAD),
            Some(CHROME_ANDROID_TABLET),
            Some("curl/8.5.0"),
            Some("Googlebot/2.1 (+http://www.google.com/bot.html)"),
            Some("not a browser at all"),
            None,
        ];
        // Twice over, with and without a screen: the second round reads
        // the remembered agents, whose device the screen may still decide.
        for _ in 0..2 {
            for ua in agents {
                for screen in [None, Some(500), Some(800), Some(1600)] {
                    assert_eq!(
                        read_by(&audience, ua, screen),
                        read(ua, screen),
                        "{ua:?} {screen:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn browsers_systems_and_devices_come_from_the_user_agent() {
        let cases: [(&str, [&str; 4]); 9] = [
            (
                CHROME_WINDOWS,
                ["Chrome", "Chrome 124", "Windows", "desktop"],
            ),
            (SAFARI_MAC, ["Safari", "Safari 17", "macOS", "desktop"]),
            (
                FIREFOX_LINUX,
                ["Firefox", "Firefox 125", "Linux", "desktop"],
            ),
            (SAFARI_IPHONE, ["Safari", "Safari 17", "iOS", "mobile"]),
            (
                CHROME_ANDROID_PHONE,
                ["Chrome", "Chrome 124", "Android", "mobile"],
            ),
            (SAFARI_IPAD, ["Safari", "Safari 17", "iOS", "tablet"]),
            (EDGE_WINDOWS, ["Edge", "Edge 124", "Windows", "desktop"]),
            (
                CHROME_ANDROID_TABLET,
                ["Chrome", "Chrome 124", "Android", "tablet"],
            ),
            (
                SAMSUNG,
                [
                    "Samsung Internet",
                    "Samsung Internet 24",
                    "Android",
                    "mobile",
                ],
            ),
        ];
        for (ua, [browser, version, os, device]) in cases {
            assert_eq!(
                read(Some(ua), Some(1280)),
                [browser, version, os, device, "laptop"],
                "{ua}"
            );
        }
    }

    #[test]
    fn without_a_user_agent_only_the_screen_tells_the_device() {
        assert_eq!(
            read(None, None),
            [
                "(unknown)",
                "(unknown)",
                "(unknown)",
                "(unknown)",
                "(unknown)"
            ]
        );
        assert_eq!(read(Some("  "), Some(390))[3..], ["mobile", "phone"]);
        assert_eq!(
            read(Some("curl/8.5.0"), Some(800))[3..],
            ["tablet", "tablet"]
        );
        assert_eq!(
            read(Some("curl/8.5.0"), Some(1920))[3..],
            ["desktop", "desktop"]
        );
        assert_eq!(read(Some("curl/8.5.0"), None)[..4], ["(unknown)"; 4]);
    }

    #[test]
    fn versions_are_the_major_number_only() {
        assert_eq!(major("125.0.1"), Some("125"));
        assert_eq!(major("17"), Some("17"));
        assert_eq!(major("UNKNOWN"), None);
        assert_eq!(major(""), None);
        assert_eq!(major("1234567.1"), None);
    }

    #[test]
    fn without_a_database_there_is_no_country() {
        let audience = Audience::new(None).unwrap();
        assert!(!audience.has_countries());
        assert_eq!(audience.country("203.0.113.9".parse().unwrap()), None);
    }

    /// A country database of the test's own: two networks, one IPv4 and
    /// one IPv6, the way GeoLite2 Country lays out a record.
    pub(crate) fn countries_file(dir: &Path) -> std::path::PathBuf {
        #[derive(serde::Serialize)]
        struct Country {
            iso_code: &'static str,
        }
        #[derive(serde::Serialize)]
        struct Record {
            country: Country,
        }
        let mut writer = mmdb_writer::Writer::new("GeoLite2-Country");
        for (net, iso_code) in [("203.0.113.0/24", "NZ"), ("2001:db8:7::/48", "de")] {
            let net: ipnet::IpNet = net.parse().unwrap();
            writer
                .insert(
                    net,
                    &Record {
                        country: Country { iso_code },
                    },
                )
                .unwrap();
        }
        let path = dir.join("countries.mmdb");
        std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
        path
    }

    #[test]
    fn countries_come_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let audience = Audience::new(Some(&countries_file(dir.path()))).unwrap();
        assert!(audience.has_countries());
        let country = |ip: &str| audience.country(ip.parse().unwrap()).map(String::from);
        assert_eq!(country("203.0.113.9"), Some("NZ".into()));
        assert_eq!(country("::ffff:203.0.113.200"), Some("NZ".into()));
        assert_eq!(country("2001:db8:7:1::5"), Some("DE".into()));
        assert_eq!(country("203.0.114.1"), None);
        assert_eq!(country("127.0.0.1"), None);
        assert_eq!(country("2001:db8:8::1"), None);
    }

    /// Every dimension of one visit, from each of its sources.
    #[test]
    fn a_visit_gives_every_dimension() {
        let dir = tempfile::tempdir().unwrap();
        let audience = Audience::new(Some(&countries_file(dir.path()))).unwrap();
        let own = |host: &str| host == "blog.example.org";
        let all = |visit: &Visit<'_>| -> Vec<String> {
            let facets = audience.facets(visit, own);
            Dimension::ALL
                .into_iter()
                .map(|d| facets.get(d).to_owned())
                .collect()
        };
        let visit = Visit {
            referrer: None,
            referer_header: Some("https://News.YCombinator.com/item?id=1"),
            page: Some("/post?utm_source=hn&utm_medium=social&utm_campaign=launch+day"),
            user_agent: Some(FIREFOX_LINUX),
            accept_language: Some("en-GB,en;q=0.8"),
            screen: Some(1280),
            client: Some("203.0.113.9".parse().unwrap()),
        };
        assert_eq!(
            all(&visit),
            [
                "news.ycombinator.com",
                "hn",
                "social",
                "launch day",
                "Firefox",
                "Firefox 125",
                "Linux",
                "desktop",
                "NZ",
                "laptop",
                "en",
            ]
        );
        // A referrer the client names is taken over the header, and an
        // empty one is none; the site's own host is none.
        let named = |referrer| Visit {
            referrer: Some(referrer),
            ..visit
        };
        assert_eq!(all(&named("https://lobste.rs/s/x"))[0], "lobste.rs");
        assert_eq!(all(&named(""))[0], "(none)");
        assert_eq!(all(&named("https://blog.example.org/a"))[0], "(none)");
        // Nothing sent: nothing known.
        assert_eq!(
            all(&Visit::default()),
            [
                "(none)",
                "(none)",
                "(none)",
                "(none)",
                "(unknown)",
                "(unknown)",
                "(unknown)",
                "(unknown)",
                "(unknown)",
                "(unknown)",
                "(unknown)",
            ]
        );
    }

    #[test]
    fn a_file_that_is_no_database_stops_the_start_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("countries.mmdb");
        std::fs::write(&path, b"not a database").unwrap();
        let error = format!("{:#}", Audience::new(Some(&path)).unwrap_err());
        assert!(error.starts_with("TALLY_GEOIP_DB: "), "{error}");
        assert!(error.contains("countries.mmdb"), "{error}");
        let missing = dir.path().join("missing.mmdb");
        let error = format!("{:#}", Audience::new(Some(&missing)).unwrap_err());
        assert!(error.starts_with("TALLY_GEOIP_DB: "), "{error}");
    }
}
