//! Signed-out dashboard sessions ([`SessionStore`]).

use super::*;

#[async_trait]
impl SessionStore for SqliteStore {
    async fn revoke_session(&self, hash: &str, expires: SystemTime) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        let (now, expires) = (unix_seconds(SystemTime::now()), unix_seconds(expires));
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM revoked_sessions WHERE expires_at <= ?1", [now])?;
            tx.execute(
                "INSERT OR IGNORE INTO revoked_sessions (session_hash, expires_at) VALUES (?1, ?2)",
                params![hash, expires],
            )?;
            tx.commit()
        })
        .await
    }

    async fn session_revoked(&self, hash: &str) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM revoked_sessions WHERE session_hash = ?1")?
                .exists([hash])
        })
        .await
    }
}
