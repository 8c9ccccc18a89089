//! The JSON API, `/api/v1`: sites, hits and counts.
//!
//! Counting a hit and reading a count are public (they are what a page or a
//! badge does); managing sites and setting counts need the admin token.

// utoipa's generated path items name the parameter types in full.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::access::Reader;
use super::client::{self, Admitted};
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{Admin, ApiJson, OptionalJson, PageParam, SiteSlug, SlugPath};
use crate::counting::{CountError, HitCount};
use crate::domain::breakdown;
use crate::domain::time::{Day, format_date, format_timestamp, today, unix};
use crate::domain::{
    NewSite, Page, RulesPatch, Site, SiteRules, Slug, TrailingSlash, UNIQUE_DAYS_KEPT,
};

/// A site, its count and its rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteBody {
    #[schema(value_type = String, example = "blog")]
    pub slug: Slug,
    pub name: String,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    pub count: i64,
    /// RFC 3339, UTC.
    #[schema(example = "2026-11-23T02:00:00Z")]
    pub created_at: String,
    /// Distinct pages counted on the site, the overflow page `(other)` not
    /// included.
    #[schema(minimum = 0)]
    pub pages: i64,
    /// Hosts whose pages may count hits (empty: any), normalised:
    /// `host` or `host:port`, lower-case.
    #[schema(example = json!(["example.com", "www.example.com:8443"]))]
    pub origins: Vec<String>,
    /// Query parameters kept in page names.
    #[schema(example = json!(["lang"]))]
    pub keep_params: Vec<String>,
    /// Whether the site's details (pages, series, unique visitors) may be
    /// read without the admin token or a dashboard session: the site's
    /// own setting, or the instance's default when it has none.
    pub public: bool,
    /// Whether a counting hit with neither `Origin` nor `Referer` is
    /// refused.
    pub require_origin: bool,
    /// Whether `/a/` and `/a` are two pages (`keep`) or one (`merge`).
    pub trailing_slash: Slash,
    /// Other names of the site, by which other counters' trackers name it
    /// (docs/peers.md).
    #[schema(example = json!(["www.example.com", "4f2c8e3a-9b1d-4c6e-8f7a-2d5b9c1e0a34"]))]
    pub aliases: Vec<String>,
}

/// What a site does with the `/` that ends a page's path.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Slash {
    /// `/a/` and `/a` are two pages.
    Keep,
    /// `/a/` counts on `/a`.
    Merge,
}

impl From<Slash> for TrailingSlash {
    fn from(slash: Slash) -> Self {
        match slash {
            Slash::Keep => TrailingSlash::Keep,
            Slash::Merge => TrailingSlash::Merge,
        }
    }
}

impl From<TrailingSlash> for Slash {
    fn from(slash: TrailingSlash) -> Self {
        match slash {
            TrailingSlash::Keep => Slash::Keep,
            TrailingSlash::Merge => Slash::Merge,
        }
    }
}

/// Every site.
#[derive(Debug, Serialize, ToSchema)]
pub struct SitesBody {
    pub sites: Vec<SiteBody>,
}

impl SiteBody {
    /// The site as the API shows it; `public_default` is the instance's
    /// default for a site with no `public` setting of its own.
    pub fn new(site: Site, public_default: bool) -> Self {
        SiteBody {
            slug: site.slug,
            name: site.name,
            count: site.count,
            created_at: format_timestamp(unix(site.created_at)),
            pages: site.pages,
            public: site.rules.public.unwrap_or(public_default),
            require_origin: site.rules.require_origin,
            trailing_slash: site.rules.trailing_slash.into(),
            origins: site.rules.origins,
            keep_params: site.rules.keep_params,
            aliases: site.rules.aliases,
        }
    }
}

/// A site's count.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountBody {
    #[schema(value_type = String, example = "blog")]
    pub site: Slug,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    pub count: i64,
}

/// A new site: a slug, and optionally a name (default: the slug), a
/// starting count (default: 0) and its rules (default: none).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", example = "blog")]
    pub slug: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    pub count: i64,
    /// Hosts whose pages may count hits: a host name or IP address, with
    /// an optional `:port` (a host alone allows it on any port), or a full
    /// origin such as `https://example.com`, which stands for its host and
    /// port. Lower-cased; no path, user name or wildcard.
    #[serde(default)]
    #[schema(max_items = 32, example = json!(["example.com", "www.example.com:8443"]))]
    pub origins: Option<Vec<String>>,
    /// Query parameters kept in page names: 1 to 64 of `A-Z a-z 0-9 _ - .`.
    #[serde(default)]
    #[schema(max_items = 8, example = json!(["lang"]))]
    pub keep_params: Option<Vec<String>>,
    /// Whether the site's details may be read without the admin token
    /// (default: the instance's, `TALLY_DASHBOARD_PUBLIC`).
    #[serde(default)]
    pub public: Option<bool>,
    /// Refuse counting hits with neither `Origin` nor `Referer` (default:
    /// false).
    #[serde(default)]
    pub require_origin: Option<bool>,
    /// `keep` (the default): `/a/` and `/a` are two pages; `merge`: one.
    #[serde(default)]
    pub trailing_slash: Option<Slash>,
}

/// A change to a site's settings: each given replaces the site's (a list
/// `[]` clears it); at least one is given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSite {
    /// As on creation.
    #[serde(default)]
    #[schema(max_items = 32, example = json!(["example.com"]))]
    pub origins: Option<Vec<String>>,
    /// As on creation.
    #[serde(default)]
    #[schema(max_items = 8, example = json!(["lang"]))]
    pub keep_params: Option<Vec<String>>,
    /// As on creation.
    #[serde(default)]
    pub public: Option<bool>,
    /// As on creation.
    #[serde(default)]
    pub require_origin: Option<bool>,
    /// As on creation.
    #[serde(default)]
    pub trailing_slash: Option<Slash>,
    /// Other names of the site (a domain, an id such as a UUID), by which
    /// other counters' trackers name it: each a slug once lower-cased, and
    /// no other site's slug or alias (else `409`).
    #[serde(default)]
    #[schema(max_items = 16, example = json!(["www.example.com"]))]
    pub aliases: Option<Vec<String>>,
}

/// A count to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCount {
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    pub count: i64,
}

/// What a hit may say: the page it counts on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HitRequest {
    /// A path, `/` first (or `%2F`), normalised as docs/pages.md's "Paths"
    /// says: percent-decoded once, in Unicode NFC, dot segments resolved,
    /// repeated slashes merged, a trailing slash as the site's
    /// `trailing_slash` says, `%`, `?` and `#` kept encoded; its query
    /// string is dropped (but for the parameters the site keeps), as is
    /// its fragment. At most 1024 characters as sent and 512 bytes once normalised;
    /// bidirectional controls and invisible characters are refused.
    #[serde(default)]
    #[schema(example = "/posts/hello", max_length = 1024)]
    pub page: Option<String>,
    /// The address of the page the visit came from (a page's
    /// `document.referrer`), counted in the `referrer` breakdown by its
    /// host: an absolute URL with a host, at most 2048 bytes; empty for
    /// none. Given, it is taken over the `Referer` header.
    #[serde(default)]
    #[schema(example = "https://news.ycombinator.com/item?id=1", max_length = 2048)]
    pub referrer: Option<String>,
    /// The screen's width in CSS pixels (`screen.width`), counted in the
    /// `screen` breakdown by its class.
    #[serde(default)]
    #[schema(example = 1280, minimum = 1, maximum = 100000)]
    pub screen: Option<u32>,
}

impl HitRequest {
    /// The referrer and screen as checked: a clear 400 for either that
    /// cannot be one.
    fn told(&self) -> Result<client::Told<'_>, ApiError> {
        if let Some(referrer) = &self.referrer {
            breakdown::referrer_host(referrer)
                .map_err(|e| ApiError::new(ErrorCode::InvalidBody, format!("referrer: {e}")))?;
        }
        let screen = self
            .screen
            .map(breakdown::checked_screen)
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::InvalidBody, format!("screen: {e}")))?;
        Ok(client::Told {
            page: self.page.as_deref(),
            referrer: self.referrer.as_deref(),
            screen,
        })
    }
}

/// A site's count after a hit and, if the hit named a page, that page's.
#[derive(Debug, Serialize, ToSchema)]
pub struct HitBody {
    #[schema(value_type = String, example = "blog")]
    pub site: Slug,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    pub count: i64,
    /// The page counted on, normalised: `(other)` when the site had
    /// reached its page limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "/posts/hello")]
    pub page: Option<Page>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    pub page_count: Option<i64>,
}

impl HitBody {
    pub fn new(site: Slug, counted: HitCount) -> Self {
        let (page, page_count) = counted.page.unzip();
        HitBody {
            site,
            count: counted.count,
            page,
            page_count,
        }
    }
}

/// `POST /api/v1/sites/{slug}/hits`: count one hit, with an optional body
/// `{"page": "/posts/hello"}`. A request with an `Origin` is a page's
/// script: from a known bot, it is answered with the counts as they stand
/// and not counted. Without one it is a program (curl, a library), whose
/// user agent most bot lists name, and it counts.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{slug}/hits",
    summary = "Counts one hit on a site (and on a page of it); answers the new counts.",
    description = "A hit sent with an Origin header (a page's script) from a known crawler, \
        link previewer or headless browser is answered with the current counts and not counted, \
        unless TALLY_BOT_FILTER is false.",
    params(SlugPath),
    request_body(content = Option<HitRequest>, content_type = "application/json"),
    responses(
        (status = 200, body = HitBody),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn hit(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    headers: HeaderMap,
    PageParam(in_query): PageParam,
    client: Admitted,
    OptionalJson(body): OptionalJson<HitRequest>,
) -> Result<Json<HitBody>, ApiError> {
    if in_query.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "a hit names its page in its JSON body ({\"page\": \"/posts/hello\"}), not in \
             the query string",
        ));
    }
    let told = match &body {
        Some(body) => body.told()?,
        None => client::Told::default(),
    };
    let from_page = headers.contains_key(header::ORIGIN);
    let bot = from_page && client::is_bot(&state, &headers);
    let counted = client.hit_unless_bot(&state, &slug, told, bot).await?;
    Ok(Json(HitBody::new(slug, counted)))
}

/// `GET /api/v1/sites/{slug}/count`: the count, without counting.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{slug}/count",
    summary = "Reads a site's count without counting.",
    params(SlugPath),
    responses(
        (status = 200, body = CountBody),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn count(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
) -> Result<Json<CountBody>, ApiError> {
    let count = state.counting.hits.count(&slug).await?;
    Ok(Json(CountBody { site: slug, count }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UniquesQuery {
    /// Days to report, today first.
    #[serde(default = "default_days")]
    #[param(minimum = 1, maximum = 32, default = 7)]
    pub days: i64,
}

/// Unique visitors per UTC day, today first.
#[derive(Debug, Serialize, ToSchema)]
pub struct UniquesBody {
    #[schema(value_type = String, example = "blog")]
    pub site: Slug,
    /// `false` while the cache that holds them is down: then every
    /// `uniques` is `null`.
    pub complete: bool,
    pub days: Vec<UniquesDay>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UniquesDay {
    #[schema(example = "2026-11-23")]
    pub date: String,
    pub uniques: Option<u64>,
}

fn default_days() -> i64 {
    7
}

/// `GET /api/v1/sites/{slug}/uniques?days=7`: estimated unique visitors per
/// UTC day, newest first. With Redis down they cannot be read: `null`s and
/// `"complete": false`, still a 200.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{slug}/uniques",
    summary = "Estimated unique visitors per UTC day, today first.",
    params(SlugPath, UniquesQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = UniquesBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn uniques(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    reader: Reader,
    query: Result<Query<UniquesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    reader.may_read(&state, &slug).await?;
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.body_text()))?;
    if !(1..=UNIQUE_DAYS_KEPT).contains(&query.days) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("days is a whole number from 1 to {UNIQUE_DAYS_KEPT}"),
        ));
    }
    let today = today();
    let days: Vec<Day> = (0..query.days).map(|i| today - i).collect();
    let estimates = state.counting.hits.uniques(&slug, &days).await?;
    let points = days
        .iter()
        .enumerate()
        .map(|(i, day)| UniquesDay {
            date: format_date(*day * 86_400),
            uniques: estimates.as_ref().map(|e| e[i]),
        })
        .collect();
    Ok(Json(UniquesBody {
        site: slug,
        complete: estimates.is_some(),
        days: points,
    }))
}

/// `PUT /api/v1/sites/{slug}/count`: set the count (import a starting value).
#[utoipa::path(
    put,
    path = "/api/v1/sites/{slug}/count",
    summary = "Sets a site's count (a starting count).",
    params(SlugPath),
    request_body(content = SetCount, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = CountBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn set_count(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    ApiJson(body): ApiJson<SetCount>,
) -> Result<Json<CountBody>, ApiError> {
    let count = state.counting.sites.set_count(&slug, body.count).await?;
    Ok(Json(CountBody { site: slug, count }))
}

/// `POST /api/v1/sites/{slug}/reset`: set the count to 0.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{slug}/reset",
    summary = "Sets a site's count to 0.",
    params(SlugPath),
    security(("bearer" = [])),
    responses(
        (status = 200, body = CountBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn reset(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
) -> Result<Json<CountBody>, ApiError> {
    let count = state.counting.sites.set_count(&slug, 0).await?;
    Ok(Json(CountBody { site: slug, count }))
}

/// `GET /api/v1/sites`
#[utoipa::path(
    get,
    path = "/api/v1/sites",
    summary = "Lists every site.",
    security(("bearer" = [])),
    responses(
        (status = 200, body = SitesBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    let sites: Vec<SiteBody> = state
        .counting
        .sites
        .sites()
        .await?
        .into_iter()
        .map(|site| SiteBody::new(site, state.dashboard_public))
        .collect();
    Ok(Json(SitesBody { sites }))
}

/// `POST /api/v1/sites`: `{"slug": "blog", "name": "My blog", "count": 0,
/// "origins": ["example.com"], "keep_params": ["lang"]}`.
#[utoipa::path(
    post,
    path = "/api/v1/sites",
    summary = "Creates a site.",
    request_body(content = CreateSite, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, body = SiteBody, headers(("location" = String, description = "The new site's URL"))),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn create(
    _: Admin,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CreateSite>,
) -> Result<impl IntoResponse, ApiError> {
    let slug = Slug::parse(&body.slug).map_err(CountError::from)?;
    let name = body.name.unwrap_or(body.slug);
    let site = state
        .counting
        .sites
        .create_site(NewSite {
            slug,
            name,
            count: body.count,
            rules: SiteRules {
                keep_params: body.keep_params.unwrap_or_default(),
                origins: body.origins.unwrap_or_default(),
                public: body.public,
                require_origin: body.require_origin.unwrap_or(false),
                trailing_slash: body.trailing_slash.map_or(TrailingSlash::Keep, Into::into),
                aliases: Vec::new(),
            },
        })
        .await?;
    let location = format!("/api/v1/sites/{}", site.slug);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(SiteBody::new(site, state.dashboard_public)),
    ))
}

/// `GET /api/v1/sites/{slug}`
#[utoipa::path(
    get,
    path = "/api/v1/sites/{slug}",
    summary = "One site.",
    params(SlugPath),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SiteBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
) -> Result<Json<SiteBody>, ApiError> {
    let site = state.counting.sites.site(&slug).await?;
    Ok(Json(SiteBody::new(site, state.dashboard_public)))
}

/// `PATCH /api/v1/sites/{slug}`: `{"origins": [...], "keep_params": [...]}`,
/// either or both.
#[utoipa::path(
    patch,
    path = "/api/v1/sites/{slug}",
    summary = "Replaces some of a site's settings.",
    params(SlugPath),
    request_body(content = UpdateSite, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SiteBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn update(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    ApiJson(body): ApiJson<UpdateSite>,
) -> Result<Json<SiteBody>, ApiError> {
    let patch = RulesPatch {
        keep_params: body.keep_params,
        origins: body.origins,
        public: body.public,
        require_origin: body.require_origin,
        trailing_slash: body.trailing_slash.map(Into::into),
        aliases: body.aliases,
    };
    let site = state.counting.sites.set_rules(&slug, patch).await?;
    Ok(Json(SiteBody::new(site, state.dashboard_public)))
}

/// `DELETE /api/v1/sites/{slug}`
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{slug}",
    summary = "Deletes a site and its series.",
    params(SlugPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn delete(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
) -> Result<StatusCode, ApiError> {
    state.counting.sites.delete_site(&slug).await?;
    Ok(StatusCode::NO_CONTENT)
}
