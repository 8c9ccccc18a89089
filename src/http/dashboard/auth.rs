//! Who may see the dashboard.
//!
//! With `TALLY_DASHBOARD_PUBLIC` anyone may. Otherwise a viewer shows the
//! admin token once, through the login form, and gets a session cookie: an
//! expiry time, a random session id and an HMAC-SHA256 of both keyed with
//! the admin token. The token itself never leaves the server again; any
//! replica can check the signature alone; changing the token ends every
//! session. `Authorization: Bearer <token>` also works, for scripts. Wrong
//! tokens, by either way, count against the client's budget in
//! [`AuthGuard`].
//!
//! Signing in and signing out are taken from a page of this host only
//! ([`same_origin`]). A foreign page can make a browser send the sign-in
//! form without reading the answer; refused before the token is looked at,
//! such a sign-in counts nothing against the budget of the address it was
//! sent from, so it cannot lock the admin out there.
//!
//! Signing out (a same-origin `POST /dashboard/logout`) records a SHA-256
//! of the cookie in the store's `revoked_sessions` until the cookie's own
//! expiry, and every dashboard request with a cookie checks that table, so
//! a copy of the cookie stops working on every replica, not just in the
//! browser that signed out.
//!
//! [`AuthGuard`]: crate::limit::AuthGuard

use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::failure;
use super::html::{error_page, page};
use crate::domain::time::at;
use crate::http::AppState;
use crate::http::client::Client;
use crate::http::extract::{auth_source, bearer, constant_time_eq};
use crate::http::session::{
    COOKIE, SESSION_SECS, cookie, now, session_expiry, session_hash, session_value, signed_in,
};
use crate::limit::Verdict;

/// A viewer allowed to see the dashboard.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    /// Signed in with the session cookie, so "Sign out" means something.
    pub session: bool,
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let Some(token) = &state.admin_token else {
            return if state.dashboard_public {
                Ok(Viewer { session: false })
            } else {
                Err(disabled())
            };
        };
        let token = token.expose();
        if state.dashboard_public {
            // Open to anyone; a session also opens the private sites.
            return match signed_in(&parts.headers, state, token).await {
                Ok(session) => Ok(Viewer { session }),
                Err(e) => Err(failure(e)),
            };
        }
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .map(|given| constant_time_eq(given.as_bytes(), token.as_bytes()));
        if let Some(valid) = given {
            match state
                .limits
                .judge_sign_in(auth_source(parts, state).await, valid)
            {
                Verdict::Allowed => return Ok(Viewer { session: false }),
                Verdict::Throttled { retry_after } => return Err(throttled(retry_after)),
                // A cookie may still open the page.
                Verdict::Failed => {}
            }
        }
        match signed_in(&parts.headers, state, token).await {
            Ok(true) => return Ok(Viewer { session: true }),
            Ok(false) => {}
            Err(e) => return Err(failure(e)),
        }
        let here = parts
            .uri
            .path_and_query()
            .map_or("/dashboard", |p| p.as_str());
        Err(to_sign_in(here))
    }
}

impl Viewer {
    /// Whether this viewer may see every site's details: signed in, or
    /// let in by the token. A viewer let in only because the dashboard is
    /// public (`TALLY_DASHBOARD_PUBLIC`) sees the public sites'.
    pub fn sees_private(self, state: &AppState) -> bool {
        self.session || !state.dashboard_public
    }
}

/// The sign-in form, which comes back to `here` (a path of this host).
pub(crate) fn to_sign_in(here: &str) -> Response {
    see_other(&format!("/dashboard/login?next={}", encode_component(here)))
}

/// A dashboard form that changes data, taken as sign-out is: only from a
/// page of this host ([`same_origin`]), and only from an admin signed in
/// with the session cookie (checked as [`Viewer`] checks it, revocation
/// included). Anything else is refused before the form is read.
#[derive(Debug, Clone, Copy)]
pub struct AdminForm;

impl FromRequestParts<Arc<AppState>> for AdminForm {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        if let Some(refused) = refuse_cross_site(
            &parts.headers,
            "Nothing changed",
            "Pages are deleted with the forms on a dashboard page of this host.",
        ) {
            return Err(refused);
        }
        match Viewer::from_request_parts(parts, state).await? {
            Viewer { session: true } => Ok(AdminForm),
            Viewer { session: false } => Err(error_page(
                StatusCode::FORBIDDEN,
                "Nothing changed",
                "Only an admin signed in to the dashboard may delete pages here; scripts use \
                 the API.",
            )),
        }
    }
}

fn disabled() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "The dashboard is private",
        "No admin token is configured, so no one can sign in. Set TALLY_ADMIN_TOKEN \
         (or TALLY_ADMIN_TOKEN_FILE) to sign in with it, or TALLY_DASHBOARD_PUBLIC=true \
         to show the dashboard to anyone.",
    )
}

/// 429 for a client past its budget of failed sign-ins.
fn throttled(retry_after: u64) -> Response {
    let mut response = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!(
            "Too many wrong tokens came from your address. Try again in {retry_after} seconds."
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// Whether a state-changing request comes from a page of this host:
/// `Sec-Fetch-Site` when the browser sends it, else the host of `Origin`,
/// else of `Referer`, must be the `Host` the request was sent to. Ports are
/// not compared: the proxy in front (NGINX's `$host`) passes the host
/// without its port, and cookies are shared across ports anyway. A request
/// that says nothing of where it came from is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site")) {
        return site == "same-origin";
    }
    let Some(host) = get(header::HOST).map(hostname) else {
        return false;
    };
    let from = get(header::ORIGIN).or_else(|| get(header::REFERER));
    from.and_then(|url| url.split_once("://"))
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .filter(|authority| !authority.contains('@'))
        .is_some_and(|authority| hostname(authority).eq_ignore_ascii_case(host))
}

/// `None` for a request from a page of this host ([`same_origin`]); else
/// the 403 page that refuses it, with `title` and `text`.
fn refuse_cross_site(headers: &HeaderMap, title: &str, text: &str) -> Option<Response> {
    (!same_origin(headers)).then(|| error_page(StatusCode::FORBIDDEN, title, text))
}

/// The host of `host[:port]` or `[v6]:port`.
fn hostname(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether the client reached us over HTTPS, as the proxy in front says.
/// Only the client's own cookie depends on it, so the header need not come
/// from a trusted proxy.
fn is_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|first| {
            first.split(';').any(|kv| {
                kv.trim().split_once('=').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("proto")
                        && v.trim_matches('"').eq_ignore_ascii_case("https")
                })
            })
        });
    forwarded_proto || forwarded
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={value}; Path=/dashboard; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Where to go after signing in: a dashboard path, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if (n == "/dashboard"
                || n.starts_with("/dashboard/")
                || n.starts_with("/dashboard?"))
                && !n.contains("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/dashboard",
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let main = html! {
        form class="login" method="post" action="/dashboard/login" {
            h1 { "Sign in" }
            p {
                "The dashboard shows every site's counts, so it asks for the admin token ("
                code { "TALLY_ADMIN_TOKEN" } ")."
            }
            @if let Some(error) = error {
                p class="error" role="alert" { (error) }
            }
            label for="token" { "Admin token" }
            input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
            input type="hidden" name="next" value=(next);
            button type="submit" { "Sign in" }
        }
    };
    page(status, "Sign in", None, main)
}

/// `GET /dashboard/login`
pub async fn login_form(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let next = query.ok().and_then(|Query(q)| q.next);
    let next = safe_next(next.as_deref());
    if state.admin_token.is_none() {
        return if state.dashboard_public {
            see_other(next)
        } else {
            disabled()
        };
    }
    login_page(StatusCode::OK, next, None)
}

/// `POST /dashboard/login`: checks the token, sets the session cookie. Only
/// a page of this host may send it: another's is refused unread and
/// uncounted.
pub async fn login(
    State(state): State<Arc<AppState>>,
    client: Client,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Some(token) = &state.admin_token else {
        return if state.dashboard_public {
            see_other("/dashboard")
        } else {
            disabled()
        };
    };
    if let Some(refused) = refuse_cross_site(
        &headers,
        "Not signed in",
        "Signing in is done with the form on this host's sign-in page.",
    ) {
        return refused;
    }
    let Ok(Form(form)) = form else {
        return login_page(
            StatusCode::BAD_REQUEST,
            "/dashboard",
            Some("Send the form from this page."),
        );
    };
    let next = safe_next(form.next.as_deref());
    let valid = constant_time_eq(form.token.as_bytes(), token.expose().as_bytes());
    match state.limits.judge_sign_in(client.source(), valid) {
        Verdict::Allowed => {}
        Verdict::Failed => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                next,
                Some("That is not the admin token."),
            );
        }
        Verdict::Throttled { retry_after } => return throttled(retry_after),
    }
    let mut response = see_other(next);
    let value = session_value(token.expose(), now());
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&value, SESSION_SECS, is_https(&headers)),
    );
    response
}

/// `POST /dashboard/logout`: ends the session on every replica (see the
/// module doc) and clears the cookie. Only a page of this host may ask.
pub async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_cross_site(
        &headers,
        "Not signed out",
        "Signing out is done with the button on a dashboard page.",
    ) {
        return refused;
    }
    let session = state.admin_token.as_ref().and_then(|token| {
        let value = cookie(&headers, COOKIE)?;
        Some((value, session_expiry(token.expose(), value, now())?))
    });
    if let Some((value, expires)) = session {
        let expires = at(i64::try_from(expires).unwrap_or(i64::MAX));
        if let Err(e) = state
            .counting
            .sessions
            .revoke_session(&session_hash(value), expires)
            .await
        {
            return failure(e);
        }
    }
    let mut response = see_other("/dashboard/login");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, is_https(&headers)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_only_with_the_same_token_and_before_expiry() {
        let v = session_value("secret", 1000);
        let session_valid = |token, v: &str, now| session_expiry(token, v, now).is_some();
        assert_eq!(
            session_expiry("secret", &v, 1000),
            Some(1000 + SESSION_SECS)
        );
        assert!(session_valid("secret", &v, 1000 + SESSION_SECS - 1));
        assert!(!session_valid("secret", &v, 1000 + SESSION_SECS));
        assert!(!session_valid("other", &v, 1000));
        assert!(!v.contains("secret"));
        // A later expiry with the old tag is refused.
        let (_, tag) = v.split_once('.').unwrap();
        let forged = format!("{}.{tag}", 1000 + SESSION_SECS + 5);
        assert!(!session_valid("secret", &forged, 1000));
        // Another id with the same tag is refused; each sign-in has its own.
        let (expires, rest) = v.split_once('.').unwrap();
        let (_, tag) = rest.split_once('.').unwrap();
        let forged = format!("{expires}.{}.{tag}", "0".repeat(32));
        assert!(!session_valid("secret", &forged, 1000));
        let second = session_value("secret", 1000);
        assert_ne!(second, v);
        assert!(session_valid("secret", &second, 1000));
        for junk in ["", ".", "x.y", "1.zz", &format!("{}.", 2000)] {
            assert!(!session_valid("secret", junk, 1000), "{junk:?}");
        }
    }

    #[test]
    fn same_origin_is_the_fetch_site_else_the_origin_else_the_referer_host() {
        let check = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            same_origin(&h)
        };
        let host = ("host", "tally.example");
        assert!(check(&[host, ("origin", "https://tally.example")]));
        assert!(check(&[host, ("origin", "http://Tally.example:8080")]));
        assert!(check(&[
            ("host", "127.0.0.1:8000"),
            ("origin", "http://127.0.0.1:8000")
        ]));
        assert!(check(&[
            ("host", "[::1]:8000"),
            ("origin", "http://[::1]:8000")
        ]));
        assert!(check(&[
            host,
            ("referer", "https://tally.example/dashboard/blog?x=1")
        ]));
        assert!(check(&[("sec-fetch-site", "same-origin")]));
        for refused in [
            &[host][..],
            &[host, ("origin", "https://evil.example")],
            &[host, ("origin", "null")],
            &[host, ("origin", "https://tally.example.evil.example")],
            &[host, ("referer", "https://evil.example/?tally.example")],
            &[host, ("referer", "https://tally.example@evil.example/")],
            &[
                host,
                ("origin", "https://evil.example"),
                ("referer", "https://tally.example/"),
            ],
            &[
                host,
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://tally.example"),
            ],
            &[host, ("sec-fetch-site", "same-site")],
            &[("origin", "https://tally.example")],
        ] {
            assert!(!check(refused), "{refused:?}");
        }
    }

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(
            safe_next(Some("/dashboard/blog?view=daily")),
            "/dashboard/blog?view=daily"
        );
        assert_eq!(safe_next(Some("/dashboard")), "/dashboard");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/dashboard//evil",
            "/api/v1/sites",
            "/dashboardx",
            "/dashboard/\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dashboard", "{bad}");
        }
        assert_eq!(safe_next(None), "/dashboard");
    }

    #[test]
    fn cookies_and_https_are_read_from_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tally_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(!is_https(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(is_https(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.2.3.4;proto=https"),
        );
        assert!(is_https(&h));
    }
}
