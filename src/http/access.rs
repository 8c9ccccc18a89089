//! Who may read a site's details: its pages, its series and its unique
//! visitors (a site's count, a page's count and badges are public, as
//! counters are). A site's details are readable with the admin token, with
//! a dashboard session, or by anyone when the site is public: its own
//! `public` setting, or the instance's default (`TALLY_DASHBOARD_PUBLIC`)
//! when it has none.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use super::error::{ApiError, ErrorCode};
use super::extract::{bearer_token, judge_bearer};
use super::session::signed_in;
use crate::domain::Slug;

/// Who reads: someone who may read every site's details, or anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The admin token, or a dashboard session.
    Admin,
    Anyone,
}

impl FromRequestParts<Arc<AppState>> for Reader {
    type Rejection = ApiError;

    /// A bearer token is checked as on admin routes (a wrong one is a
    /// 401 and a failure against the client's budget), so a reader that
    /// sends one learns that it is wrong rather than reading as anyone.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let Some(token) = &state.admin_token else {
            return Ok(Reader::Anyone);
        };
        if let Some(given) = bearer_token(parts) {
            judge_bearer(parts, state, &given, token.expose()).await?;
            return Ok(Reader::Admin);
        }
        if signed_in(&parts.headers, state, token.expose()).await? {
            return Ok(Reader::Admin);
        }
        Ok(Reader::Anyone)
    }
}

impl Reader {
    /// Whether this reader may read `slug`'s details: a 401 if not, a 404
    /// if there is no such site.
    pub async fn may_read(self, state: &AppState, slug: &Slug) -> Result<(), ApiError> {
        if self == Reader::Admin {
            return Ok(());
        }
        let rules = state.counting.sites.rules(slug).await?;
        if rules.public.unwrap_or(state.dashboard_public) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            format!(
                "site {slug}'s pages, series and unique visitors are private: send \
                 'Authorization: Bearer <admin token>', or make the site public \
                 (PATCH /api/v1/sites/{slug} {{\"public\": true}})"
            ),
        ))
    }
}
