//! Series retention: hourly buckets older than `TALLY_SERIES_RETENTION` are
//! folded into their site's base count, so old hours stop costing rows while
//! every count stays exactly what it was.
//!
//! Every replica runs this; folding is idempotent, so they need no
//! coordination.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::sleep;

use super::Services;
use crate::domain::time::hour_start;

/// How often old buckets are folded. An hour is the finest unit of the
/// series, so running more often would find nothing new.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Buckets of hours before this instant are folded.
pub fn cutoff(now: SystemTime, retention: Duration) -> SystemTime {
    hour_start(now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// Folds old buckets once the store is ready, then every [`EVERY`], until
/// the task is aborted.
pub async fn run(counting: Arc<Services>, retention: Duration) {
    while !counting.health.is_ready() {
        sleep(Duration::from_millis(100)).await;
    }
    loop {
        let before = cutoff(SystemTime::now(), retention);
        match counting.series.prune_series(before).await {
            Ok(0) => {}
            Ok(folded) => tracing::info!(folded, "folded old hourly buckets into base counts"),
            Err(e) => tracing::warn!(error = %e, "series retention failed; will retry"),
        }
        // Spread replicas out so they do not all fold at the same moment.
        let jitter = Duration::from_secs(fastrand::u64(0..300));
        sleep(EVERY + jitter).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn cutoff_is_an_hour_start_retention_before_now() {
        let now = UNIX_EPOCH + Duration::from_secs(10 * 86_400 + 3 * 3600 + 25);
        let got = cutoff(now, Duration::from_secs(2 * 86_400));
        assert_eq!(got, UNIX_EPOCH + Duration::from_secs(8 * 86_400 + 3 * 3600));
        assert_eq!(cutoff(now, Duration::from_secs(u64::MAX / 2)), UNIX_EPOCH);
    }
}
