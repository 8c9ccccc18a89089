//! The OpenAPI 3 document of `/api/v1`, served at `/api/v1/openapi.json`.
//!
//! It is generated from the handlers' own `#[utoipa::path]` attributes and
//! the body types' derives, so a body or parameter cannot change without
//! the document changing with it; a test checks that every route of the
//! router under `/api/v1` is in it.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{api, breakdowns, pages, series, transfer};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "tally",
        description = "A self-hosted hit counter with exact, durable counts. Counting and \
                       reading are public; the rest needs `Authorization: Bearer <admin token>`.",
        license(name = "MIT"),
    ),
    paths(
        api::list,
        api::create,
        api::get,
        api::update,
        api::delete,
        api::hit,
        api::count,
        api::set_count,
        api::uniques,
        api::reset,
        series::series,
        pages::list,
        pages::delete,
        pages::count,
        breakdowns::breakdown,
        transfer::export,
        transfer::import,
    ),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

/// The admin token's security scheme.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("TALLY_ADMIN_TOKEN"))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, rendered once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| unreachable!("the document serialises: {e}"))
    })
}

/// `GET /api/v1/openapi.json`
pub async fn serve() -> Response {
    let mut response = document().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UNIQUE_DAYS_KEPT;

    fn doc() -> serde_json::Value {
        serde_json::from_str(document()).unwrap()
    }

    #[test]
    fn every_operation_documents_its_errors_and_admin_ones_their_token() {
        let doc = doc();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 12, "{:?}", paths.keys());
        let mut operations = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.contains_key("400") || path == "/api/v1/sites",
                    "{method} {path}"
                );
                assert!(responses.contains_key("503"), "{method} {path}");
                let admin = op.get("security").is_some();
                assert_eq!(admin, responses.contains_key("401"), "{method} {path}");
            }
        }
        assert_eq!(operations, 17);
    }

    #[test]
    fn limits_in_the_document_are_the_code_s() {
        let doc = doc();
        let days = doc["paths"]["/api/v1/sites/{slug}/uniques"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "days")
            .unwrap()
            .clone();
        assert_eq!(days["schema"]["maximum"], UNIQUE_DAYS_KEPT);
        let count = &doc["components"]["schemas"]["SetCount"]["properties"]["count"];
        assert_eq!(count["maximum"], crate::domain::MAX_COUNT);
        let raw_page = crate::domain::page::MAX_RAW_PAGE_LEN;
        let hit = &doc["components"]["schemas"]["HitRequest"]["properties"]["page"];
        assert_eq!(hit["maxLength"], raw_page);
        for path in [
            "/api/v1/sites/{slug}/pages/count",
            "/api/v1/sites/{slug}/series",
        ] {
            let page = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "page")
                .unwrap()
                .clone();
            assert_eq!(page["schema"]["maxLength"], raw_page, "{path}");
        }
    }
}
