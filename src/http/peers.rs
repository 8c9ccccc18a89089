//! Other counters' protocols, so that a page that runs Plausible's,
//! Umami's or GoatCounter's tracker counts on tally by changing only the
//! host it sends to: `POST /api/event` (Plausible's Events API),
//! `POST /api/send` (Umami's) and `GET /count` (GoatCounter's). A site is
//! named as the peer names it: Plausible's `domain`, Umami's `website`,
//! GoatCounter's host, each the slug or an alias of the site. Every hit goes through the
//! same admission, origin allow-list, bot filter and exactly-once rules as
//! tally's own routes, and bad input gets a 400 that names what is wrong
//! and counts nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::client::{self, Admitted};
use super::error::{ApiError, ErrorCode};
use crate::domain::Slug;
use crate::domain::breakdown;

/// Sites one Plausible event may name (`domain: "a.example,b.example"`).
const MAX_DOMAINS: usize = 10;

/// A peer's name for a site, as a slug: lower-cased, without a trailing
/// dot or a port.
fn site_named(name: &str, field: &str) -> Result<Slug, ApiError> {
    let host = name.trim().trim_end_matches('.').to_ascii_lowercase();
    Slug::parse(&host).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidSite,
            format!("{field}: {name:?} names no site: {e}"),
        )
    })
}

/// The page a hit counts on from a page's whole address: its path and
/// query (the campaign's parameters are read from it, and dropped from the
/// page's name as the site's rules say). An address that is a path
/// already (Umami's `url`) is taken as it is.
fn page_of(url: &str, field: &str) -> Result<String, ApiError> {
    if url.starts_with('/') {
        return Ok(url.to_owned());
    }
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|u| u.has_host())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidBody,
                format!("{field}: {url:?} is not a page's address (https://host/path)"),
            )
        })?;
    Ok(match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    })
}

/// Where a field came from: its name, and the error a bad value gets (a
/// body's or a query's).
type Field<'a> = (&'a str, ErrorCode);

/// A referrer as a peer's tracker sends it: empty or absent is none, else
/// an address with a host.
fn referrer_of<'a>(
    raw: Option<&'a str>,
    (field, code): Field<'_>,
) -> Result<Option<&'a str>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(None);
    };
    breakdown::referrer_host(raw).map_err(|e| ApiError::new(code, format!("{field}: {e}")))?;
    Ok(Some(raw))
}

/// A screen's width, in CSS pixels, as checked for any hit.
fn screen_of(width: Option<u32>, (field, code): Field<'_>) -> Result<Option<u32>, ApiError> {
    width
        .map(breakdown::checked_screen)
        .transpose()
        .map_err(|e| ApiError::new(code, format!("{field}: {e}")))
}

/// A JSON body, which a tracker may send as `text/plain` (so that no
/// preflight is needed): either type is read, any other is a 415.
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !matches!(
        kind.as_deref(),
        None | Some("application/json" | "text/plain")
    ) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body is JSON, sent as application/json or text/plain",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidBody, format!("the body: {e}")))
}

/// Plausible's event, with the long names of its Events API or the short
/// ones its script sends.
#[derive(Debug, Deserialize)]
struct PlausibleEvent {
    #[serde(alias = "n")]
    name: String,
    #[serde(alias = "u")]
    url: String,
    #[serde(alias = "d")]
    domain: String,
    #[serde(alias = "r", default)]
    referrer: Option<String>,
    #[serde(alias = "w", default)]
    screen_width: Option<u32>,
}

/// `POST /api/event`: Plausible's Events API. A `pageview` counts one hit
/// on the page of `url`, on each site `domain` names (comma-separated),
/// with its referrer and screen; answers `202` as Plausible does. An
/// `engagement` (the time on a page and how far it was scrolled, which
/// Plausible's newer tracker sends as a page is left) is answered the same
/// and kept nowhere: tally keeps no time on page. Other event names are
/// refused (`400`): tally counts page views only.
pub async fn plausible(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: Admitted,
    body: Bytes,
) -> Result<Response, ApiError> {
    let event: PlausibleEvent = json_body(&headers, &body)?;
    if event.name == "engagement" {
        return Ok((StatusCode::ACCEPTED, "ok").into_response());
    }
    if event.name != "pageview" {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "name: {:?} is a custom event; tally counts page views (\"pageview\") only",
                event.name
            ),
        ));
    }
    let sites = event
        .domain
        .split(',')
        .map(|d| site_named(d, "domain"))
        .collect::<Result<Vec<_>, _>>()?;
    if sites.len() > MAX_DOMAINS {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("domain: at most {MAX_DOMAINS} sites in one event"),
        ));
    }
    let page = page_of(&event.url, "url")?;
    let told = client::Told {
        page: Some(&page),
        referrer: referrer_of(
            event.referrer.as_deref(),
            ("referrer", ErrorCode::InvalidBody),
        )?,
        screen: screen_of(event.screen_width, ("screen_width", ErrorCode::InvalidBody))?,
    };
    let bot = client::is_bot(&state, &headers);
    for name in &sites {
        let slug = state.counting.sites.named(name).await?;
        client.hit_unless_bot(&state, &slug, told, bot).await?;
    }
    Ok((StatusCode::ACCEPTED, "ok").into_response())
}

/// Umami's `{"type": "event", "payload": {…}}`.
#[derive(Debug, Deserialize)]
struct UmamiSend {
    #[serde(rename = "type")]
    kind: String,
    payload: UmamiPayload,
}

#[derive(Debug, Deserialize)]
struct UmamiPayload {
    website: String,
    url: String,
    #[serde(default)]
    referrer: Option<String>,
    /// `1920x1080`.
    #[serde(default)]
    screen: Option<String>,
    /// A custom event's name; none for a page view.
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/send`: Umami's tracker. A page view (an `event` without a
/// `name`) counts one hit on the page of `url` on the site `website`
/// names, with its referrer and screen; answers `200 {}` as Umami's server
/// does. A named (custom) event is refused (`400`).
pub async fn umami(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: Admitted,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sent: UmamiSend = json_body(&headers, &body)?;
    if sent.kind != "event" {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("type: {:?}: tally takes \"event\" only", sent.kind),
        ));
    }
    let payload = sent.payload;
    if let Some(name) = payload.name.as_deref().filter(|n| !n.is_empty()) {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("payload.name: {name:?} is a custom event; tally counts page views only"),
        ));
    }
    let slug = site_named(&payload.website, "payload.website")?;
    let slug = state.counting.sites.named(&slug).await?;
    let page = page_of(&payload.url, "payload.url")?;
    let screen = match payload.screen.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(screen) => {
            let width = screen
                .split_once('x')
                .map_or(screen, |(w, _)| w)
                .parse::<u32>()
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidBody,
                        format!("payload.screen: {screen:?} is not WIDTHxHEIGHT"),
                    )
                })?;
            screen_of(Some(width), ("payload.screen", ErrorCode::InvalidBody))?
        }
    };
    // A single-page app's later views name the page before them by its
    // path: a move within the site, no referral.
    let referrer = payload.referrer.as_deref().filter(|r| !r.starts_with('/'));
    let told = client::Told {
        page: Some(&page),
        referrer: referrer_of(referrer, ("payload.referrer", ErrorCode::InvalidBody))?,
        screen,
    };
    let bot = client::is_bot(&state, &headers);
    client.hit_unless_bot(&state, &slug, told, bot).await?;
    Ok(axum::Json(serde_json::json!({})).into_response())
}

/// GoatCounter's query: `p` the path, `r` the referrer, `s` the screen's
/// width, `q` the page's query, `b` the script's bot verdict; `t` (the
/// title) and `rnd` (a cache buster) are read and not kept.
#[derive(Debug, Default)]
struct GoatCount {
    path: Option<String>,
    referrer: Option<String>,
    screen: Option<String>,
    query: Option<String>,
    bot: Option<String>,
}

impl GoatCount {
    fn of(query: Option<&str>) -> Result<GoatCount, ApiError> {
        let mut count = GoatCount::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match key.as_ref() {
                "p" => &mut count.path,
                "r" => &mut count.referrer,
                "s" => &mut count.screen,
                "q" => &mut count.query,
                "b" => &mut count.bot,
                "t" | "rnd" | "e" => continue,
                other => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidQuery,
                        format!("{other:?}: GoatCounter's count takes p, r, t, s, q, b and rnd"),
                    ));
                }
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("{key}: given twice"),
                ));
            }
        }
        Ok(count)
    }
}

/// `GET /count?p=/posts/hello`: GoatCounter's. Counts one hit on page `p`
/// of the site whose slug is the request's host (as self-hosted
/// GoatCounter picks its site), with its referrer (`r`), screen (`s`) and
/// campaign (`q`'s `utm_` parameters); answers a 1×1 GIF. A hit the script
/// marked as a bot's (`b` other than `0`) is answered and not counted.
pub async fn goatcounter(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    client: Admitted,
) -> Result<Response, ApiError> {
    let count = GoatCount::of(query.as_deref())?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
        .ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidSite, "a count names its site by its Host")
        })?;
    let slug = site_named(host, "Host")?;
    let slug = state.counting.sites.named(&slug).await?;
    let path = count
        .path
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidQuery, "p: the page's path is missing"))?;
    if !path.starts_with('/') {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("p: {path:?} is not a path (it starts with /)"),
        ));
    }
    let page = match count.query.as_deref().map(|q| q.trim_start_matches('?')) {
        Some(q) if !q.is_empty() && !path.contains('?') => format!("{path}?{q}"),
        _ => path,
    };
    let screen = match count.screen.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let width = s.split(',').next().unwrap_or(s).trim();
            let width = width
                .parse::<f64>()
                .ok()
                .filter(|w| w.is_finite())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidQuery,
                        format!("s: {s:?} is not a screen's width"),
                    )
                })?;
            screen_of(Some(width as u32), ("s", ErrorCode::InvalidQuery))?
        }
    };
    let told = client::Told {
        page: Some(&page),
        referrer: referrer_of(count.referrer.as_deref(), ("r", ErrorCode::InvalidQuery))?,
        screen,
    };
    let marked = count
        .bot
        .as_deref()
        .is_some_and(|b| !b.is_empty() && b != "0");
    let bot = marked || client::is_bot(&state, &headers);
    client.hit_unless_bot(&state, &slug, told, bot).await?;
    Ok(super::pages::pixel_response())
}
