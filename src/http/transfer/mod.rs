//! Export and import, both admin actions: `GET /api/v1/export` writes every
//! site's count, hourly series and pages; `POST /api/v1/import` takes what
//! export writes (or a plain list of counts), streamed, checked whole
//! before any write, and creates missing sites.

// utoipa's generated path items name the parameter types in full.
#![allow(unused_qualifications)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{Admin, ApiQuery};
use super::format::Format;
use crate::domain::ImportEntry;
use crate::domain::time::unix;

mod document;
mod import;

use document::export_csv;
pub use document::{
    BreakdownExport, DayExport, ExportBody, HourExport, ImportSite, PageExport, SiteExport,
};
pub use import::{MAX_IMPORT_PAGES, parse_import};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// `GET /api/v1/export?format=json|csv`
#[utoipa::path(
    get,
    path = "/api/v1/export",
    summary = "Every site's count, hourly series and pages.",
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
    let sites = state.counting.transfer.export().await?;
    let disposition = |ext: &str| format!("attachment; filename=\"tally-export.{ext}\"");
    Ok(match format {
        Format::Json => (
            [(header::CONTENT_DISPOSITION, disposition("json"))],
            Json(ExportBody::of(sites, SystemTime::now())),
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

/// `?hours=replay` replays an export's hours; by default (`base`) each
/// count lands in the base count and the site's hours are kept.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `base` (default): each count lands in the base count; `replay`: an
    /// export's hours replace the site's hours.
    #[param(pattern = "^(base|replay)$")]
    hours: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedBody {
    slug: String,
    count: i64,
    /// Whether the import created the site.
    created: bool,
}

/// What an import set.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReply {
    imported: Vec<ImportedBody>,
}

/// `POST /api/v1/import` with an export's JSON or `[{"slug":…,"count":…}]`.
#[utoipa::path(
    post,
    path = "/api/v1/import",
    summary = "Sets counts, creating missing sites: an export's document or a list of sites.",
    params(ImportQuery),
    request_body(content = Vec<ImportSite>, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ImportReply),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn import(
    _: Admin,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let replay = match query.hours.as_deref() {
        None | Some("base") => false,
        Some("replay") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "hours is \"replay\" (replace each site's hours by the document's) or \"base\"",
            ));
        }
    };
    if !is_json(request.headers()) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ));
    }
    let limit = state.max_import_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let entries = read_import(request.into_body(), limit, replay).await?;
    let done = state.counting.transfer.import(entries).await?;
    let imported: Vec<ImportedBody> = done
        .into_iter()
        .map(|d| ImportedBody {
            slug: d.slug.into(),
            count: d.count,
            created: d.created,
        })
        .collect();
    Ok(Json(ImportReply { imported }))
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.rsplit_once('+').is_some_and(|(ty, suffix)| {
            ty.starts_with("application/") && suffix.eq_ignore_ascii_case("json")
        })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("an import is at most {limit} bytes (TALLY_MAX_IMPORT_BYTES)"),
    )
}

/// Parses the body as it arrives, on a blocking thread, so that only the
/// parsed entries are held (a fraction of the body's size), never the body.
async fn read_import(body: Body, limit: usize, replay: bool) -> Result<Vec<ImportEntry>, ApiError> {
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let mut seen = 0;
    let chunks = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len();
        if seen > limit {
            flag.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(
                "the body is larger than the import limit",
            ));
        }
        Ok(chunk)
    });
    let reader = SyncIoBridge::new(StreamReader::new(chunks));
    let now = unix(SystemTime::now());
    let parsed = tokio::task::spawn_blocking(move || {
        parse_import(
            std::io::BufReader::with_capacity(64 << 10, reader),
            replay,
            now,
        )
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the import parser failed");
        ApiError::internal()
    })?;
    parsed.map_err(|e| {
        if over.load(Ordering::Relaxed) {
            too_large(limit)
        } else if e.is_io() {
            ApiError::new(
                ErrorCode::InvalidBody,
                "the body could not be read to its end",
            )
        } else if e.is_data() {
            ApiError::new(ErrorCode::InvalidBody, e.to_string())
        } else {
            ApiError::new(ErrorCode::InvalidJson, e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::domain::MAX_COUNT;

    #[test]
    fn the_openapi_document_bounds_what_an_import_takes() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::http::openapi::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("ImportSite", "count"),
            ("SiteExport", "count"),
            ("SiteExport", "base_count"),
            ("HourExport", "hits"),
            ("PageExport", "count"),
            ("DayExport", "hits"),
            ("BreakdownExport", "hits"),
        ] {
            let property = &schemas[schema]["properties"][field];
            assert_eq!(
                (&property["minimum"], &property["maximum"]),
                (&serde_json::json!(0), &serde_json::json!(MAX_COUNT)),
                "{schema}.{field}"
            );
        }
        for (schema, field, format) in [
            ("ExportBody", "exported_at", "date-time"),
            ("SiteExport", "created_at", "date-time"),
            ("HourExport", "t", "date-time"),
            ("DayExport", "d", "date"),
            ("BreakdownExport", "d", "date"),
        ] {
            let property = &schemas[schema]["properties"][field];
            assert_eq!(property["format"], format, "{schema}.{field}");
        }
    }
}
