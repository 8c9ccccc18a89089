//! The domain: what tally counts and the rules every count keeps, with no
//! HTTP, no SQL and no cache in it. Every other module speaks these types;
//! this one uses none of theirs.
//!
//! - sites ([`Site`], [`NewSite`]) named by a [`Slug`], and their counts
//!   ([`Versioned`]), up to [`MAX_COUNT`];
//! - what a series, an export and an import carry ([`SeriesData`],
//!   [`SiteDump`], [`ImportEntry`], [`Imported`]);
//! - the visitor behind a hit, for unique-visitor estimates ([`Visitor`]);
//! - [`breakdown`]: where hits came from and who read them, by dimension;
//! - [`time`]: unix seconds, UTC hours and days, RFC 3339 text.

pub mod breakdown;
pub mod origin;
pub mod page;
pub mod slug;
pub mod time;

use std::net::IpAddr;
use std::time::SystemTime;

pub use page::{InvalidPage, Page, TrailingSlash};
pub use slug::{InvalidSlug, MAX_SLUG_LEN, Slug};

/// The largest count tally stores or accepts: 2^53 - 1, the largest integer
/// a JSON reader using doubles (every browser) reads exactly.
pub const MAX_COUNT: i64 = (1 << 53) - 1;

/// Longest site display name, in characters.
pub const MAX_NAME_LEN: usize = 200;

/// Days of unique-visitor estimates kept.
pub const UNIQUE_DAYS_KEPT: i64 = 32;

/// The shortest series retention accepted: the hit writer adds to the
/// current hour's bucket, which must never be folded under it, and the
/// dashboard shows the last 48 hours.
pub const MIN_RETENTION: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);

/// A site's numeric id. The seed's only site has id 1.
pub type SiteId = i64;

/// The site that the seed routes (`/`, `/resetcounter`) count on.
pub const DEFAULT_SITE_ID: SiteId = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub slug: Slug,
    pub name: String,
    pub count: i64,
    pub generation: i64,
    pub created_at: SystemTime,
    /// Distinct pages counted on it, the overflow page not included.
    pub pages: i64,
    pub rules: SiteRules,
}

/// What a site's owner set about how its pages are counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteRules {
    /// Query parameters kept in page names (see [`Page::parse`]).
    pub keep_params: Vec<String>,
    /// Hosts whose pages may count hits here (from their `Origin` or
    /// `Referer`); empty: any.
    pub origins: Vec<String>,
    /// Whether the site's details (its pages, series, unique visitors) may
    /// be read without the admin token; `None`: the instance's default
    /// (`TALLY_DASHBOARD_PUBLIC`).
    pub public: Option<bool>,
    /// Whether a counting hit must name the page it comes from (an
    /// `Origin` or a `Referer`): a hit with neither is refused.
    pub require_origin: bool,
    /// Whether `/a/` and `/a` are one page.
    pub trailing_slash: TrailingSlash,
    /// Other names of the site (a domain, an id), each a slug no other
    /// site has as its slug or alias, by which other counters' trackers
    /// name it.
    pub aliases: Vec<String>,
}

impl SiteRules {
    /// Whether a hit from a page on `host` may count: always when the site
    /// names no host, and when no host is known (no `Origin` nor
    /// `Referer`: not a browser's page) unless the site requires one.
    ///
    /// `host` is an authority, `host[:port]`: a listed `host` allows it on
    /// any port, a listed `host:port` on that port only.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(authority) = host else {
            return !self.require_origin;
        };
        let bare = match authority.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        self.origins.is_empty()
            || self
                .origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(authority) || o.eq_ignore_ascii_case(bare))
    }

    /// The rules with each list checked and normalised (see
    /// [`page::parse_kept_params`] and [`origin::parse_origins`]).
    pub fn checked(self) -> Result<SiteRules, Invalid> {
        Ok(SiteRules {
            keep_params: page::parse_kept_params(&self.keep_params)?,
            origins: origin::parse_origins(&self.origins)?,
            aliases: parse_aliases(&self.aliases)?,
            ..self
        })
    }

    /// The form the store keeps a list in: names separated by spaces (no
    /// checked entry holds one).
    pub fn join(list: &[String]) -> String {
        list.join(" ")
    }

    pub fn split(text: &str) -> Vec<String> {
        text.split_ascii_whitespace().map(str::to_owned).collect()
    }
}

/// A change to a site's rules: each setting given replaces the site's (an
/// empty list clears it); a setting not given is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesPatch {
    pub keep_params: Option<Vec<String>>,
    pub origins: Option<Vec<String>>,
    pub public: Option<bool>,
    pub require_origin: Option<bool>,
    pub trailing_slash: Option<TrailingSlash>,
    pub aliases: Option<Vec<String>>,
}

/// Most aliases a site has.
pub const MAX_ALIASES: usize = 16;

/// A site's aliases as given: each a slug once lower-cased (a domain name
/// or an id such as a UUID), at most [`MAX_ALIASES`]; each kept once, in
/// the order given.
pub fn parse_aliases(list: &[String]) -> Result<Vec<String>, Invalid> {
    if list.len() > MAX_ALIASES {
        return Err(Invalid(format!("a site has at most {MAX_ALIASES} aliases")));
    }
    let mut aliases: Vec<String> = Vec::with_capacity(list.len());
    for raw in list {
        let alias = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        Slug::parse(&alias).map_err(|e| Invalid(format!("alias {raw:?}: {e}")))?;
        if !aliases.contains(&alias) {
            aliases.push(alias);
        }
    }
    Ok(aliases)
}

impl RulesPatch {
    /// The change with each list given checked and normalised, as
    /// [`SiteRules::checked`] checks them; a change that gives no list is
    /// refused.
    pub fn checked(self) -> Result<RulesPatch, Invalid> {
        if self == RulesPatch::default() {
            return Err(Invalid(
                "give at least one of origins, keep_params, public, require_origin, \
                 trailing_slash and aliases: the settings that replace the site's"
                    .into(),
            ));
        }
        Ok(RulesPatch {
            keep_params: self
                .keep_params
                .map(|l| page::parse_kept_params(&l))
                .transpose()?,
            origins: self
                .origins
                .map(|l| origin::parse_origins(&l))
                .transpose()?,
            aliases: self.aliases.map(|l| parse_aliases(&l)).transpose()?,
            ..self
        })
    }
}

/// One page of a site: its all-time count and its hits in a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageStat {
    pub page: Page,
    pub count: i64,
    pub hits: i64,
}

/// A site's pages, most hits in the range first (then highest count, then
/// name), one slice of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageList {
    pub site: Site,
    pub pages: Vec<PageStat>,
    /// Whether pages come after this slice.
    pub more: bool,
}

/// One slice of a site's pages ranked by their hits in the days
/// `[from, to)`: `limit` pages from the `offset`th.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSlice {
    pub from: time::Day,
    pub to: time::Day,
    pub limit: i64,
    pub offset: i64,
}

/// What a breakdown is asked for: a site's hits (or only one of its
/// pages', or only those from one referrer: at most one of the two) per
/// value of `dimension` in the days `[from, to)`, `limit` values from the
/// `offset`th, most hits first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownQuery {
    pub dimension: breakdown::Dimension,
    pub page: Option<Page>,
    /// A referrer's value as the breakdowns keep it: a host, `(none)` or
    /// `(other)`.
    pub referrer: Option<String>,
    pub from: time::Day,
    pub to: time::Day,
    pub limit: i64,
    pub offset: i64,
}

/// Which of a site's hits a [`BreakdownQuery`] reads, as the stores keep
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Narrowed<'a> {
    /// All of them.
    Site,
    /// One page's.
    Page(&'a str),
    /// The referrer dimension, narrowed to one of its values.
    OneReferrer(&'a str),
    /// Those from a referrer (not `(none)`), under another dimension.
    Referrer(&'a str),
    /// Those from no referrer, under another dimension: the site's less
    /// every referrer's.
    Direct,
}

impl BreakdownQuery {
    pub fn narrowed(&self) -> Narrowed<'_> {
        match (&self.page, self.referrer.as_deref()) {
            (Some(page), _) => Narrowed::Page(page.as_str()),
            (None, None) => Narrowed::Site,
            (None, Some(referrer)) if self.dimension == breakdown::Dimension::Referrer => {
                Narrowed::OneReferrer(referrer)
            }
            (None, Some(breakdown::NONE)) => Narrowed::Direct,
            (None, Some(referrer)) => Narrowed::Referrer(referrer),
        }
    }
}

/// One value of a dimension over a range of days (`referrer`
/// `news.ycombinator.com`): its hits per day that had any, and the pages
/// with the most of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueDetail {
    pub site: Site,
    /// (day, hits), by day.
    pub days: Vec<(time::Day, i64)>,
    /// (page, hits), most hits first, then by name.
    pub pages: Vec<(String, i64)>,
}

/// One slice of a breakdown: each value with its hits, most hits first
/// (then by value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownList {
    pub site: Site,
    pub values: Vec<(String, i64)>,
    /// Whether values come after this slice.
    pub more: bool,
}

/// Which of a site's pages a deletion takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageSelector {
    /// One page, by the name it is listed under: the overflow page too.
    Named(Page),
    /// Every page whose name starts with this text, which starts with `/`
    /// (so never the overflow page).
    Prefix(Box<str>),
    /// Every page with fewer than `hits` hits in the days `[from, to)`,
    /// the overflow page aside.
    FewerThan {
        hits: i64,
        from: time::Day,
        to: time::Day,
    },
}

impl PageSelector {
    /// Every page whose name starts with `text`: a text checked as a page
    /// name is ([`Page::stored`]) that starts with `/`.
    pub fn prefix(text: &str) -> Result<PageSelector, InvalidPage> {
        let page = Page::stored(text)?;
        if page.is_overflow() {
            return Err(InvalidPage::NoLeadingSlash);
        }
        Ok(PageSelector::Prefix(page.as_str().into()))
    }

    /// Whether it takes `page`, which had `hits` hits in its range (for
    /// [`PageSelector::FewerThan`]; the others ignore them).
    pub fn selects(&self, page: &Page, hits: i64) -> bool {
        match self {
            PageSelector::Named(name) => name == page,
            PageSelector::Prefix(prefix) => page.as_str().starts_with(&**prefix),
            PageSelector::FewerThan { hits: below, .. } => !page.is_overflow() && hits < *below,
        }
    }
}

/// One page's daily hits over `[from, to)` and its count before them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSeries {
    pub site: Site,
    pub page: Page,
    /// The page's count before `from` (0 for a page never hit).
    pub before: i64,
    /// The non-empty days in the range, ascending: (day, hits).
    pub days: Vec<(time::Day, i64)>,
}

/// A page as an export carries it: its count and its daily hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageDump {
    pub page: Page,
    pub count: i64,
    /// Ascending: (day, hits), adding up to at most `count`.
    pub days: Vec<(time::Day, i64)>,
}

/// A committed count and the generation it belongs to. Ordered by
/// generation first: a reset starts a new generation, so every count from
/// after it is greater than every count from before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Versioned {
    pub generation: i64,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct NewSite {
    pub slug: Slug,
    pub name: String,
    pub count: i64,
    /// Checked by [`SiteRules::checked`] before a store sees them.
    pub rules: SiteRules,
}

/// A site's hourly buckets over `[from, to)` and the hits before them, read
/// in one snapshot so that `before + sum(buckets)` is the count as of `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesData {
    pub site: Site,
    /// The base count plus every bucket before `from`.
    pub before: i64,
    /// The non-empty hours in `[from, to)`, ascending: (hour start, hits).
    pub buckets: Vec<(SystemTime, i64)>,
}

/// All a store holds about one site, read in one snapshot (for export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDump {
    pub site: Site,
    pub base_count: i64,
    /// Every bucket, ascending: (hour start, hits).
    pub buckets: Vec<(SystemTime, i64)>,
    /// Every page, by name.
    pub pages: Vec<PageDump>,
    /// Every breakdown row: the site's (no page, no referrer) first, then
    /// each referrer's, then each page's, each by day, dimension and value.
    pub breakdowns: Vec<BreakdownDump>,
}

/// One breakdown row as export writes it and import replays it: a site's
/// (or one of its pages') hits under one value of one dimension on one
/// day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownDump {
    pub day: time::Day,
    pub dimension: breakdown::Dimension,
    pub value: String,
    pub page: Option<Page>,
    /// The referrer whose hits the row counts (never `(none)`; never with
    /// a page, nor under the referrer dimension).
    pub referrer: Option<String>,
    pub hits: i64,
}

/// One site's starting count in an import; `name` is used only when the site
/// is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportEntry {
    pub slug: Slug,
    pub name: String,
    pub count: i64,
    /// Hours to replay, `(unix hour start, hits)`, ascending, adding up to
    /// at most `count`: they replace the site's buckets and the base count
    /// takes the rest. `None` sets the count as [`set_count_split`] says.
    /// Unix seconds rather than `SystemTime`: a large import holds millions.
    pub hours: Option<Vec<(i64, i64)>>,
    /// When a site that is created was first created (unix seconds), as
    /// the export says; `None`: now.
    pub created_at: Option<i64>,
    /// Pages that replace the site's pages; `None` keeps them as they are,
    /// unless [`keeps_pages`] says the new count cannot.
    pub pages: Option<Vec<PageDump>>,
    /// Breakdown rows, with hours replayed: they replace the site's (which
    /// go whenever its hours are replaced or dropped). A page's rows name
    /// pages of `pages`.
    pub breakdowns: Vec<BreakdownDump>,
}

impl ImportEntry {
    /// The count that lands in no hour.
    pub fn replayed_base(&self) -> Option<i64> {
        let hours = self.hours.as_ref()?;
        Some(self.count - hours.iter().map(|(_, hits)| hits).sum::<i64>())
    }
}

/// What an import did to one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub id: SiteId,
    pub slug: Slug,
    pub count: i64,
    pub generation: i64,
    pub created: bool,
}

/// Who a hit came from, for unique-visitor counting only. It is hashed with
/// a secret salt that changes every UTC day before anything keeps it, and
/// the hash goes only into a HyperLogLog, which keeps no hash at all: a
/// visitor cannot be recognised across days, nor recovered on any day.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub ip: IpAddr,
    pub user_agent: String,
}

/// A value that breaks a rule of the domain; the text says which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<InvalidSlug> for Invalid {
    fn from(e: InvalidSlug) -> Self {
        Invalid(e.to_string())
    }
}

/// A site name is 1 to 200 characters with no control characters.
pub fn validate_name(name: &str) -> Result<(), Invalid> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Invalid(format!(
            "a site name is 1 to {MAX_NAME_LEN} characters with no control characters"
        )));
    }
    Ok(())
}

/// A count is a whole number from 0 to [`MAX_COUNT`].
pub fn validate_count(count: i64) -> Result<(), Invalid> {
    if (0..=MAX_COUNT).contains(&count) {
        Ok(())
    } else {
        Err(Invalid(format!(
            "a count is a whole number from 0 to {MAX_COUNT}"
        )))
    }
}

/// How a store sets a site's count to `count` when `bucketed` of its hits
/// are in hourly buckets. A count at or above the hourly total keeps the
/// hours, and the base count takes the rest; a count below it cannot keep
/// them (the series would add up to more than the count), so the hours are
/// dropped and the base count is the whole count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetCount {
    pub drop_hours: bool,
    pub base: i64,
}

/// Whether a site keeps its pages, which hold `paged` hits, when its count
/// is set to `count`: not when its hours are dropped (`drop_hours`), nor
/// when its pages would hold more hits than the site. The second happens
/// when retention has folded the hours the pages' hits were in: the hours
/// left may all fit under a count that the pages do not.
pub fn keeps_pages(count: i64, paged: i64, drop_hours: bool) -> bool {
    !drop_hours && paged <= count
}

pub fn set_count_split(count: i64, bucketed: i64) -> SetCount {
    if count < bucketed {
        SetCount {
            drop_hours: true,
            base: count,
        }
    } else {
        SetCount {
            drop_hours: false,
            base: count - bucketed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_names() {
        assert!(validate_count(0).is_ok());
        assert!(validate_count(MAX_COUNT).is_ok());
        assert!(validate_count(-1).is_err());
        assert!(validate_count(MAX_COUNT + 1).is_err());
        assert!(validate_name("My blog").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"é".repeat(200)).is_ok());
        assert!(validate_name(&"é".repeat(201)).is_err());
    }

    #[test]
    fn allowed_origins_match_a_host_on_any_port_or_a_host_and_port() {
        let rules = SiteRules {
            keep_params: vec![],
            origins: vec!["allowed.test".into(), "other.test:8443".into()],
            ..SiteRules::default()
        }
        .checked()
        .unwrap();
        assert!(rules.allows(None));
        assert!(rules.allows(Some("allowed.test")));
        assert!(rules.allows(Some("allowed.test:8080")));
        assert!(rules.allows(Some("other.test:8443")));
        assert!(!rules.allows(Some("other.test")));
        assert!(!rules.allows(Some("other.test:8444")));
        assert!(!rules.allows(Some("evil.test")));
        assert!(!rules.allows(Some("allowed.test.evil.test")));
        assert!(!rules.allows(Some("null")));
        assert!(SiteRules::default().allows(Some("evil.test")));
        let strict = SiteRules {
            require_origin: true,
            ..rules
        };
        assert!(!strict.allows(None));
        assert!(strict.allows(Some("allowed.test")));
        assert!(!strict.allows(Some("evil.test")));
        let open = SiteRules {
            require_origin: true,
            ..SiteRules::default()
        };
        assert!(!open.allows(None));
        assert!(open.allows(Some("evil.test")));
    }

    #[test]
    fn a_rules_change_gives_at_least_one_list_and_is_checked() {
        assert!(RulesPatch::default().checked().is_err());
        let patch = RulesPatch {
            keep_params: None,
            origins: Some(vec!["https://A.test".into()]),
            ..RulesPatch::default()
        };
        assert_eq!(
            patch.checked().unwrap(),
            RulesPatch {
                keep_params: None,
                origins: Some(vec!["a.test".into()]),
                ..RulesPatch::default()
            }
        );
        let cleared = RulesPatch {
            keep_params: Some(vec![]),
            origins: None,
            ..RulesPatch::default()
        };
        assert_eq!(cleared.clone().checked().unwrap(), cleared);
        let bad = RulesPatch {
            keep_params: Some(vec!["a b".into()]),
            origins: Some(vec!["ok.test".into()]),
            ..RulesPatch::default()
        };
        assert!(bad.checked().is_err());
        let flag = RulesPatch {
            public: Some(false),
            ..RulesPatch::default()
        };
        assert_eq!(flag.clone().checked().unwrap(), flag);
    }

    #[test]
    fn pages_go_with_the_hours_or_when_they_would_pass_the_count() {
        assert!(keeps_pages(10, 10, false));
        assert!(keeps_pages(10, 0, false));
        assert!(!keeps_pages(10, 11, false));
        assert!(!keeps_pages(10, 0, true));
    }

    #[test]
    fn a_count_below_the_hours_drops_them() {
        let keep = |base| SetCount {
            drop_hours: false,
            base,
        };
        assert_eq!(set_count_split(10, 4), keep(6));
        assert_eq!(set_count_split(4, 4), keep(0));
        assert_eq!(set_count_split(0, 0), keep(0));
        assert_eq!(
            set_count_split(3, 4),
            SetCount {
                drop_hours: true,
                base: 3
            }
        );
        assert_eq!(
            set_count_split(0, 1),
            SetCount {
                drop_hours: true,
                base: 0
            }
        );
    }
}
