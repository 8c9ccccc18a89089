//! Dashboard sessions: the cookie a sign-in sets, and whether a request
//! carries a live one. A session is an expiry time, a random id and an
//! HMAC-SHA256 of both keyed with the admin token, so any replica checks
//! it alone and changing the token ends every session; signing out
//! records a hash of the cookie in the store until its expiry.

use std::time::SystemTime;

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::counting::CountError;
use crate::domain::time::unix;

pub const COOKIE: &str = "tally_session";

/// How long a sign-in lasts.
pub const SESSION_SECS: u64 = 7 * 86_400;

/// Says a MAC is over a dashboard session, so it can never be confused with
/// any other use of the token as a key.
const SESSION_CONTEXT: &[u8] = b"tally dashboard session v1\0";

/// Whether the request carries a session cookie signed with `token`,
/// unexpired and not signed out.
pub(crate) async fn signed_in(
    headers: &HeaderMap,
    state: &AppState,
    token: &str,
) -> Result<bool, CountError> {
    let Some(value) = cookie(headers, COOKIE) else {
        return Ok(false);
    };
    if session_expiry(token, value, now()).is_none() {
        return Ok(false);
    }
    Ok(!state
        .counting
        .sessions
        .session_revoked(&session_hash(value))
        .await?)
}

pub(crate) fn now() -> u64 {
    u64::try_from(unix(SystemTime::now())).unwrap_or(0)
}

fn mac(token: &str, expires: u64, id: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(SESSION_CONTEXT);
    mac.update(format!("{expires}.{id}").as_bytes());
    mac
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cookie value for a session that starts at `now`:
/// `expiry.id.tag`. The random id makes each sign-in its own session, so
/// signing out of one leaves the others (another browser, the same
/// second) alone.
pub fn session_value(token: &str, now: u64) -> String {
    let expires = now + SESSION_SECS;
    let mut id = [0u8; 16];
    if getrandom::fill(&mut id).is_err() {
        // The id need only be unique, not secret: the tag protects it.
        id = fastrand::u128(..).to_le_bytes();
    }
    let id = hex(&id);
    let tag = mac(token, expires, &id).finalize().into_bytes();
    format!("{expires}.{id}.{}", hex(&tag))
}

/// When `value` expires, if it is an unexpired session signed with
/// `token`, written exactly as [`session_value`] writes it: sign-out
/// revokes the value's hash, so a respelling of the same session (`+` or
/// zeros before the expiry, upper-case hex) must not pass. The tag is
/// compared in constant time.
pub fn session_expiry(token: &str, value: &str, now: u64) -> Option<u64> {
    let (expires_text, rest) = value.split_once('.')?;
    let (id, hex) = rest.split_once('.')?;
    let expires = expires_text.parse::<u64>().ok()?;
    let canonical = expires.to_string() == expires_text
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical
        || expires <= now
        || expires > now + SESSION_SECS
        || hex.len() != 64
        || id.len() != 32
    {
        return None;
    }
    let tag = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    mac(token, expires, id).verify_slice(&tag).ok()?;
    Some(expires)
}

/// What the store keeps of a signed-out session: a hash, so the table
/// holds nothing a browser could send.
pub(crate) fn session_hash(value: &str) -> String {
    hex(&Sha256::digest(value.as_bytes()))
}

/// The value of cookie `name`, if the request sent one.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
