//! Which user agents are crawlers, link previewers and headless browsers:
//! hits from them are not views (`TALLY_BOT_FILTER`).
//!
//! The list is not ours: it is the Crawlerdex database that the `iscrawl`
//! crate bundles (its `database` feature), some 2 900 patterns from search
//! engines and SEO crawlers to chat apps' link previewers and headless
//! browsers, each with the kind of robot it is. Of the crates.io crates
//! with such a list it is the one being kept up: `isbot` has not changed
//! since 2022 and holds a few hundred patterns, `voight_kampff` not since
//! 2020. Only the list is used, not `iscrawl::is_crawler`: that is a
//! heuristic which calls anything without a browser engine's name in it a
//! crawler (an empty user agent too) and which misses headless browsers.
//!
//! One rule is ours: GitHub's image proxy (`github-camo (…)`) fetches a
//! README's badges for the people reading it, so its hits are views.

/// The first word of the user agent of GitHub's image proxy, which the
/// list has as a robot.
const GITHUB_CAMO: &str = "github-camo";

/// Whether bots are filtered, and the test for a bot.
#[derive(Debug, Clone, Copy)]
pub struct Bots {
    enabled: bool,
}

impl Bots {
    /// `enabled` is `TALLY_BOT_FILTER`. When on, the list's matchers are
    /// built here, at start-up (about a tenth of a second and 20 MB, once
    /// per process), rather than on the first hit; when off, never.
    pub fn new(enabled: bool) -> Bots {
        if enabled {
            let _ = iscrawl::crawler_info(GITHUB_CAMO);
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
        !is_github_camo(user_agent) && iscrawl::crawler_info(user_agent).is_some()
    }
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
        assert!(iscrawl::crawler_info(GITHUB_CAMO_UA).is_some());
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
}
