//! Which user agents are crawlers, link previewers and headless browsers:
//! hits from them are not views (`TALLY_BOT_FILTER`).
//!
//! The list is not ours: it is the Crawlerdex database that the `iscrawl`
//! crate publishes, some 2 900 patterns from search engines and SEO
//! crawlers to chat apps' link previewers and headless browsers. Of the
//! crates.io crates with such a list it is the one being kept up: `isbot`
//! has not changed since 2022 and holds a few hundred patterns,
//! `voight_kampff` not since 2020. `build.rs` takes the patterns from the
//! package cargo downloaded; the matcher is ours. `iscrawl`'s own builds
//! one Aho-Corasick DFA over every literal, 14 MB of tables (19 MB of RSS
//! per process) to save a fraction of a microsecond per user agent; here
//! the same literals go into a contiguous NFA (under 1 MB), and the
//! hundred-odd patterns that are regular expressions into one `RegexSet`,
//! about 3 MB in all. Its verdicts are `iscrawl`'s, user agent for user
//! agent, over the 25 898 of that crate's own test corpus (1.2.1; a test
//! below).
//! `iscrawl::is_crawler` is not used: it is a heuristic which calls
//! anything without a browser engine's name in it a crawler (an empty user
//! agent too) and which misses headless browsers.
//!
//! One rule is ours: GitHub's image proxy (`github-camo (…)`) fetches a
//! README's badges for the people reading it, so its hits are views.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex::RegexSet;

mod list {
    include!(concat!(env!("OUT_DIR"), "/crawlers.rs"));
}

/// The first word of the user agent of GitHub's image proxy, which the
/// list has as a robot.
const GITHUB_CAMO: &str = "github-camo";

/// The list, matched: built once per process, on first use.
static LIST: LazyLock<Crawlers> = LazyLock::new(|| Crawlers::new(list::CRAWLER_PATTERNS));

/// Whether bots are filtered, and the test for a bot.
#[derive(Debug, Clone, Copy)]
pub struct Bots {
    enabled: bool,
}

impl Bots {
    /// `enabled` is `TALLY_BOT_FILTER`. When on, the list's matchers are
    /// built here, at start-up (a few milliseconds and about 3 MB, once per
    /// process), rather than on the first hit; when off, never.
    pub fn new(enabled: bool) -> Bots {
        if enabled {
            LazyLock::force(&LIST);
        }
        Bots { enabled }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a request with this `User-Agent` is a bot's: always `false`
    /// when filtering is off. A missing or blank user agent says nothing
    /// about who sent it, so it is no bot.
    pub fn is_bot(&self, user_agent: Option<&str>) -> bool {
        if !self.enabled {
            return false;
        }
        let Some(user_agent) = user_agent.map(str::trim).filter(|ua| !ua.is_empty()) else {
            return false;
        };
        !is_github_camo(user_agent) && LIST.matches(user_agent)
    }
}

/// The list's patterns in two matchers: the plain strings (nearly all of
/// them) in one automaton, the regular expressions in one set.
struct Crawlers {
    literals: AhoCorasick,
    expressions: RegexSet,
}

impl Crawlers {
    /// A pattern the `regex` crate cannot compile (one uses a look-ahead)
    /// is left out, as `iscrawl` leaves it out.
    fn new(patterns: &[&str]) -> Crawlers {
        let mut literals = Vec::new();
        let mut expressions = Vec::new();
        for pattern in patterns {
            match as_literal(pattern) {
                Some(literal) => literals.push(literal),
                None if parses(pattern) => expressions.push(*pattern),
                None => {}
            }
        }
        Crawlers {
            literals: AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .build(&literals)
                .expect("the crawler list's strings build an automaton"),
            expressions: RegexSet::new(&expressions)
                .expect("the crawler list's expressions compile together"),
        }
    }

    fn matches(&self, user_agent: &str) -> bool {
        self.literals.is_match(user_agent) || self.expressions.is_match(user_agent)
    }
}

/// The string a pattern matches when it is a plain string: no operator,
/// only punctuation escaped (`Googlebot\/` is `Googlebot/`); `None` for a
/// regular expression (`\d`, a class, a group, an anchor, a `.`).
fn as_literal(pattern: &str) -> Option<String> {
    let mut literal = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) if escaped.is_ascii_punctuation() => literal.push(escaped),
                _ => return None,
            },
            '.' | '^' | '$' | '*' | '+' | '?' | '{' | '}' | '[' | ']' | '|' | '(' | ')' => {
                return None;
            }
            c => literal.push(c),
        }
    }
    (!literal.is_empty()).then_some(literal)
}

/// Whether the `regex` crate reads `pattern` (its syntax alone: the set
/// compiles them all once).
fn parses(pattern: &str) -> bool {
    regex_syntax::parse(pattern).is_ok()
}

/// `github-camo (876de43e)`: the proxy's own user agent, not one that
/// merely mentions it somewhere.
fn is_github_camo(user_agent: &str) -> bool {
    user_agent
        .strip_prefix(GITHUB_CAMO)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '/']))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const GOOGLEBOT_SMARTPHONE: &str = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) \
        AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.201 Mobile Safari/537.36 \
        (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const BINGBOT: &str = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
    const SLACKBOT: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
    const TWITTERBOT: &str = "Twitterbot/1.0";
    const FACEBOOK: &str =
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)";
    const HEADLESS_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
        (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36";
    const GITHUB_CAMO_UA: &str = "github-camo (876de43e)";
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
        (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) \
        AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1";

    #[test]
    fn crawlers_previewers_and_headless_browsers_are_bots() {
        let bots = Bots::new(true);
        for ua in [
            GOOGLEBOT,
            GOOGLEBOT_SMARTPHONE,
            BINGBOT,
            SLACKBOT,
            TWITTERBOT,
            FACEBOOK,
            HEADLESS_CHROME,
        ] {
            assert!(bots.is_bot(Some(ua)), "{ua}");
        }
    }

    #[test]
    fn browsers_and_github_s_image_proxy_are_not() {
        let bots = Bots::new(true);
        for ua in [
            GITHUB_CAMO_UA,
            "github-camo",
            CHROME,
            FIREFOX,
            SAFARI_IPHONE,
        ] {
            assert!(!bots.is_bot(Some(ua)), "{ua}");
        }
    }

    #[test]
    fn the_camo_exception_is_for_camo_s_own_user_agent_only() {
        let bots = Bots::new(true);
        // The list has camo as a robot: the exception is what lets it count.
        assert!(LIST.matches(GITHUB_CAMO_UA));
        assert!(!bots.is_bot(Some(GITHUB_CAMO_UA)));
        for ua in [
            "github-camo-clone/1.0",
            "Mozilla/5.0 (compatible; Googlebot/2.1) github-camo (876de43e)",
        ] {
            assert!(bots.is_bot(Some(ua)), "{ua}");
        }
    }

    #[test]
    fn no_user_agent_cannot_be_told_and_is_no_bot() {
        let bots = Bots::new(true);
        for ua in [None, Some(""), Some("   ")] {
            assert!(!bots.is_bot(ua), "{ua:?}");
        }
    }

    #[test]
    fn with_filtering_off_nothing_is_a_bot() {
        let bots = Bots::new(false);
        assert!(!bots.enabled());
        for ua in [GOOGLEBOT, BINGBOT, HEADLESS_CHROME, "curl/8.5.0"] {
            assert!(!bots.is_bot(Some(ua)), "{ua}");
        }
        assert!(Bots::new(true).enabled());
    }

    #[test]
    fn hostile_user_agents_are_answered() {
        let bots = Bots::new(true);
        let long = format!("{CHROME} {}", "x".repeat(64 * 1024));
        assert!(!bots.is_bot(Some(&long)));
        let long_bot = format!("{} {GOOGLEBOT}", "(".repeat(64 * 1024));
        assert!(bots.is_bot(Some(&long_bot)));
        assert!(!bots.is_bot(Some("\u{0}\u{fffd}日本語 ((((")));
    }

    #[test]
    fn plain_strings_are_told_from_expressions() {
        assert_eq!(as_literal("Googlebot\\/").as_deref(), Some("Googlebot/"));
        assert_eq!(as_literal("^LCC "), None);
        assert_eq!(as_literal("Java\\/[0-9]"), None);
        assert_eq!(as_literal("BlogTraffic\\/\\d"), None);
        assert_eq!(as_literal("archive-com.com"), None);
        assert_eq!(as_literal("trailing\\"), None);
        assert_eq!(as_literal(""), None);
    }

    #[test]
    fn the_list_is_split_between_its_two_matchers() {
        let patterns = list::CRAWLER_PATTERNS;
        let literal = patterns.iter().filter(|p| as_literal(p).is_some()).count();
        assert!(patterns.len() > 2000, "{}", patterns.len());
        assert_eq!(LIST.literals.patterns_len(), literal);
        // Every pattern but the one with a look-ahead is matched somewhere.
        assert_eq!(LIST.expressions.len(), patterns.len() - literal - 1);
    }

    /// The verdicts are the `iscrawl` crate's own (its matcher over the same
    /// list), user agent for user agent, over the user agents its tests
    /// use: browsers and crawlers.
    #[test]
    fn the_verdicts_are_the_list_s_own_over_its_corpus() {
        let fixtures = std::path::Path::new(list::ISCRAWL_DIR).join("tests/fixtures");
        let (mut seen, mut robots) = (0, 0);
        for file in [
            "browser_user_agents.txt",
            "crawler_user_agents.txt",
            "crawler_user_agents_pgts.txt",
            "loadkpi_crawlers.txt",
        ] {
            let text = std::fs::read_to_string(fixtures.join(file)).expect(file);
            for ua in text.lines() {
                let theirs = iscrawl::crawler_info(ua).is_some();
                assert_eq!(LIST.matches(ua), theirs, "{file}: {ua}");
                seen += 1;
                robots += usize::from(theirs);
            }
        }
        assert!(seen > 20_000, "{seen}");
        // Both kinds are there in thousands (5 943 robots of 25 898 in 1.2.1).
        assert!(robots > 1000 && seen - robots > 1000, "{robots} of {seen}");
    }
}
