//! Signed-out dashboard sessions, kept in the store so that every replica
//! sees a sign-out.

use std::sync::Arc;

use super::{CountError, Ready};
use crate::store::SessionStore;

#[derive(Debug)]
pub struct SessionService {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) ready: Ready,
}

impl SessionService {
    /// Records a signed-out dashboard session (a hash of its cookie) until
    /// it would have expired; kept in the store so every replica sees it.
    pub async fn revoke_session(
        &self,
        hash: &str,
        expires: std::time::SystemTime,
    ) -> Result<(), CountError> {
        self.ready.check()?;
        Ok(self.store.revoke_session(hash, expires).await?)
    }

    /// Whether a dashboard session was signed out.
    pub async fn session_revoked(&self, hash: &str) -> Result<bool, CountError> {
        self.ready.check()?;
        Ok(self.store.session_revoked(hash).await?)
    }
}
