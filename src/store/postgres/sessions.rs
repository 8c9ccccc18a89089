//! Signed-out dashboard sessions ([`SessionStore`]).

use super::*;

#[async_trait]
impl SessionStore for PgStore {
    async fn revoke_session(&self, hash: &str, expires: SystemTime) -> Result<(), StoreError> {
        self.run(async |client| {
            client
                .execute(
                    "DELETE FROM revoked_sessions WHERE expires_at <= now()",
                    &[],
                )
                .await?;
            client
                .execute(
                    "INSERT INTO revoked_sessions (session_hash, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (session_hash) DO NOTHING",
                    &[&hash, &expires],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn session_revoked(&self, hash: &str) -> Result<bool, StoreError> {
        self.run(async |client| {
            let stmt = client
                .prepare_cached("SELECT 1 FROM revoked_sessions WHERE session_hash = $1")
                .await?;
            Ok(client.query_opt(&stmt, &[&hash]).await?.is_some())
        })
        .await
    }
}
