//! The JSON API, `/api/v1`: sites, hits and counts.
//!
//! Counting a hit and reading a count are public (they are what a page or a
//! badge does); managing sites and setting counts need the admin token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::client::Client;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, SiteSlug};
use crate::cache::{self, Day, UNIQUE_DAYS_KEPT};
use crate::store::{NewSite, Site};

#[derive(Debug, Serialize)]
pub struct SiteBody {
    pub slug: String,
    pub name: String,
    pub count: i64,
    pub created_at: String,
}

impl From<Site> for SiteBody {
    fn from(site: Site) -> Self {
        SiteBody {
            slug: site.slug,
            name: site.name,
            count: site.count,
            created_at: rfc3339(site.created_at),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[derive(Debug, Serialize)]
pub struct CountBody {
    pub site: String,
    pub count: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    pub slug: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub count: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCount {
    pub count: i64,
}

/// `POST /api/v1/sites/{slug}/hits`: count one hit.
pub async fn hit(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    client: Client,
) -> Result<Json<CountBody>, ApiError> {
    client.admit(&state)?;
    let count = state.counter.hit(&slug, &client.hit()).await?;
    Ok(Json(CountBody { site: slug, count }))
}

/// `GET /api/v1/sites/{slug}/count`: the count, without counting.
pub async fn count(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
) -> Result<Json<CountBody>, ApiError> {
    let count = state.counter.count(&slug).await?;
    Ok(Json(CountBody { site: slug, count }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniquesQuery {
    #[serde(default = "default_days")]
    pub days: i64,
}

fn default_days() -> i64 {
    7
}

/// `GET /api/v1/sites/{slug}/uniques?days=7`: estimated unique visitors per
/// UTC day, newest first. With Redis down they cannot be read: `null`s and
/// `"complete": false`, still a 200.
pub async fn uniques(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    query: Result<Query<UniquesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if !(1..=UNIQUE_DAYS_KEPT).contains(&query.days) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("days is a whole number from 1 to {UNIQUE_DAYS_KEPT}"),
        ));
    }
    let today = cache::today();
    let days: Vec<Day> = (0..query.days).map(|i| today - i).collect();
    let estimates = state.counter.uniques(&slug, &days).await?;
    let points: Vec<serde_json::Value> = days
        .iter()
        .enumerate()
        .map(|(i, day)| {
            serde_json::json!({
                "date": date(*day),
                "uniques": estimates.as_ref().map(|e| e[i]),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "site": slug,
        "complete": estimates.is_some(),
        "days": points,
    })))
}

/// `YYYY-MM-DD` of a day number.
fn date(day: Day) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(day.unsigned_abs() * 86_400);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
}

/// `PUT /api/v1/sites/{slug}/count`: set the count (import a starting value).
pub async fn set_count(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    ApiJson(body): ApiJson<SetCount>,
) -> Result<Json<CountBody>, ApiError> {
    let count = state.counter.set_count(&slug, body.count).await?;
    Ok(Json(CountBody { site: slug, count }))
}

/// `POST /api/v1/sites/{slug}/reset`: set the count to 0.
pub async fn reset(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
) -> Result<Json<CountBody>, ApiError> {
    let count = state.counter.set_count(&slug, 0).await?;
    Ok(Json(CountBody { site: slug, count }))
}

/// `GET /api/v1/sites`
pub async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    let sites: Vec<SiteBody> = state
        .counter
        .sites()
        .await?
        .into_iter()
        .map(SiteBody::from)
        .collect();
    Ok(Json(serde_json::json!({ "sites": sites })))
}

/// `POST /api/v1/sites`: `{"slug": "blog", "name": "My blog", "count": 0}`.
pub async fn create(
    _: Admin,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CreateSite>,
) -> Result<impl IntoResponse, ApiError> {
    let name = body.name.unwrap_or_else(|| body.slug.clone());
    let site = state
        .counter
        .create_site(NewSite {
            slug: body.slug,
            name,
            count: body.count,
        })
        .await?;
    let location = format!("/api/v1/sites/{}", site.slug);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(SiteBody::from(site)),
    ))
}

/// `GET /api/v1/sites/{slug}`
pub async fn get(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
) -> Result<Json<SiteBody>, ApiError> {
    Ok(Json(state.counter.site(&slug).await?.into()))
}

/// `DELETE /api/v1/sites/{slug}`
pub async fn delete(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
) -> Result<StatusCode, ApiError> {
    state.counter.delete_site(&slug).await?;
    Ok(StatusCode::NO_CONTENT)
}
