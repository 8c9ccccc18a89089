//! Export and import, both admin actions: `GET /api/v1/export` writes every
//! site's count and hourly series; `POST /api/v1/import` sets starting
//! counts, creating missing sites, all or nothing.

// utoipa's generated path items name the parameter types in full.
#![allow(unused_qualifications)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiQuery};
use super::openapi::ErrorBody;
use super::series::Format;
use crate::counting::series::{format_timestamp, unix};
use crate::store::{ImportEntry, SiteDump};

/// Largest import body, whatever `TALLY_MAX_BODY_BYTES` says: an export of
/// many sites is larger than any other request.
pub const MAX_IMPORT_BYTES: usize = 8 << 20;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// Every site with its count, base count and hours: what import takes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportBody {
    exported_at: String,
    sites: Vec<SiteExport>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteExport {
    slug: String,
    name: String,
    count: i64,
    /// Hits in no hour below: `count = base_count + sum(hourly hits)`.
    base_count: i64,
    created_at: String,
    hourly: Vec<HourExport>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HourExport {
    t: String,
    hits: i64,
}

/// `GET /api/v1/export?format=json|csv`
#[utoipa::path(
    get,
    path = "/api/v1/export",
    summary = "Every site's count and hourly series.",
    params(ExportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The export", content(
            (ExportBody = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn export(
    _: Admin,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = Format::parse(query.format.as_deref())?;
    let sites = state.counter.export().await?;
    let disposition = |ext: &str| format!("attachment; filename=\"tally-export.{ext}\"");
    Ok(match format {
        Format::Json => (
            [(header::CONTENT_DISPOSITION, disposition("json"))],
            Json(ExportBody {
                exported_at: format_timestamp(unix(SystemTime::now())),
                sites: sites.into_iter().map(site_export).collect(),
            }),
        )
            .into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition("csv")),
            ],
            export_csv(&sites),
        )
            .into_response(),
    })
}

fn site_export(dump: SiteDump) -> SiteExport {
    SiteExport {
        slug: dump.site.slug,
        name: dump.site.name,
        count: dump.site.count,
        base_count: dump.base_count,
        created_at: format_timestamp(unix(dump.site.created_at)),
        hourly: dump
            .buckets
            .into_iter()
            .map(|(t, hits)| HourExport {
                t: format_timestamp(unix(t)),
                hits,
            })
            .collect(),
    }
}

/// `site,name,count,t,hits`: per site, a row with an empty `t` holding the
/// base count, then one row per hour, so a site's `hits` add up to `count`.
fn export_csv(sites: &[SiteDump]) -> String {
    let mut out = String::from("site,name,count,t,hits\n");
    for dump in sites {
        let name = csv_field(&dump.site.name);
        let (slug, count) = (&dump.site.slug, dump.site.count);
        let _ = writeln!(out, "{slug},{name},{count},,{}", dump.base_count);
        for (t, hits) in &dump.buckets {
            let t = format_timestamp(unix(*t));
            let _ = writeln!(out, "{slug},{name},{count},{t},{hits}");
        }
    }
    out
}

/// Quotes a field that holds a separator, a quote or a line break (RFC 4180).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// An export's `{"sites": [...]}`; its other fields are accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportDocument {
    sites: Vec<ImportSite>,
    #[serde(default)]
    #[allow(dead_code)]
    exported_at: Option<IgnoredAny>,
}

/// One site: `slug` and `count`, and `name` for a site that is created. An
/// export's other fields are accepted and ignored: the hours are not
/// imported, the count lands in the base count.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ImportSite {
    slug: String,
    count: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    base_count: Option<IgnoredAny>,
    #[serde(default)]
    created_at: Option<IgnoredAny>,
    #[serde(default)]
    hourly: Option<IgnoredAny>,
}

#[derive(Debug, Serialize)]
struct ImportedBody {
    slug: String,
    count: i64,
    created: bool,
}

/// `POST /api/v1/import` with an export's JSON or `[{"slug":…,"count":…}]`.
pub async fn import(
    _: Admin,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::bad_request("invalid_body", e.to_string());
    let sites: Vec<ImportSite> = match body {
        Value::Array(_) => serde_json::from_value(body).map_err(invalid)?,
        Value::Object(_) => {
            serde_json::from_value::<ImportDocument>(body)
                .map_err(invalid)?
                .sites
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "send a list of {\"slug\", \"count\"} or an export's {\"sites\": [...]}",
            ));
        }
    };
    let entries = sites
        .into_iter()
        .map(|s| ImportEntry {
            name: s.name.unwrap_or_else(|| s.slug.clone()),
            slug: s.slug,
            count: s.count,
        })
        .collect();
    let done = state.counter.import(entries).await?;
    let imported: Vec<ImportedBody> = done
        .into_iter()
        .map(|d| ImportedBody {
            slug: d.slug,
            count: d.count,
            created: d.created,
        })
        .collect();
    Ok(Json(serde_json::json!({ "imported": imported })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("My blog"), "My blog");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
