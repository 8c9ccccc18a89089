//! Process metrics, rendered in the Prometheus text format at `/metrics`.
//!
//! A handful of fixed counters and histograms on atomics: nothing on the hot
//! path takes a lock or allocates, which a general registry would.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug)]
pub struct Metrics {
    /// HTTP responses by status class (1xx..5xx).
    responses: [AtomicU64; 5],
    in_flight: AtomicU64,
    request_seconds: Histogram,
    /// Hits acknowledged after commit.
    hits: AtomicU64,
    commits: AtomicU64,
    commit_failures: AtomicU64,
    batch_size: Histogram,
    commit_seconds: Histogram,
    store_errors: AtomicU64,
    queue_rejections: AtomicU64,
    rate_limited: AtomicU64,
    read_limited: AtomicU64,
    store_ready: AtomicBool,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    connections_timed_out: AtomicU64,
    connections_evicted: AtomicU64,
}

const SECONDS_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            responses: Default::default(),
            in_flight: AtomicU64::new(0),
            request_seconds: Histogram::new(SECONDS_BOUNDS, 1e9),
            hits: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            batch_size: Histogram::new(BATCH_BOUNDS, 1.0),
            commit_seconds: Histogram::new(SECONDS_BOUNDS, 1e9),
            store_errors: AtomicU64::new(0),
            queue_rejections: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            read_limited: AtomicU64::new(0),
            store_ready: AtomicBool::new(false),
            connections_open: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_timed_out: AtomicU64::new(0),
            connections_evicted: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a request as in flight until the guard drops (which also
    /// happens when the client goes away mid-request).
    pub fn request_started(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(&self.in_flight)
    }

    pub fn response(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Relaxed);
        self.request_seconds.observe_duration(elapsed);
    }

    /// One group commit: its size, how long it took, whether it landed.
    pub fn commit(&self, batch: usize, elapsed: Duration, ok: bool) {
        self.commit_seconds.observe_duration(elapsed);
        if ok {
            self.commits.fetch_add(1, Relaxed);
            self.batch_size.observe(batch as u64);
            self.hits.fetch_add(batch as u64, Relaxed);
        } else {
            self.commit_failures.fetch_add(1, Relaxed);
        }
    }

    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Relaxed);
    }

    pub fn queue_rejection(&self) {
        self.queue_rejections.fetch_add(1, Relaxed);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    pub fn read_limited(&self) {
        self.read_limited.fetch_add(1, Relaxed);
    }

    /// Counts a client connection as open until the guard drops.
    pub fn connection_opened(&self) -> InFlight<'_> {
        self.connections_open.fetch_add(1, Relaxed);
        InFlight(&self.connections_open)
    }

    /// A connection closed at once: every slot, probe slots too, was taken.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// A connection closed because its phase's deadline passed.
    pub fn connection_timed_out(&self) {
        self.connections_timed_out.fetch_add(1, Relaxed);
    }

    /// A connection without a whole request pushed out for a new one.
    pub fn connection_evicted(&self) {
        self.connections_evicted.fetch_add(1, Relaxed);
    }

    pub fn set_store_ready(&self, ready: bool) {
        self.store_ready.store(ready, Relaxed);
    }

    /// Hits acknowledged so far (committed and answered).
    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    /// The Prometheus text exposition; `queue_depth` is read by the caller
    /// from the write queue itself.
    pub fn render(&self, queue_depth: usize) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP tally_http_responses_total HTTP responses by status class.\n");
        out.push_str("# TYPE tally_http_responses_total counter\n");
        for (i, n) in self.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "tally_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                n.load(Relaxed)
            );
        }
        gauge(
            &mut out,
            "tally_http_requests_in_flight",
            "Requests received and not yet answered.",
            self.in_flight.load(Relaxed) as f64,
        );
        self.request_seconds.render(
            &mut out,
            "tally_http_request_duration_seconds",
            "Time from request to response.",
        );
        counter(
            &mut out,
            "tally_hits_total",
            "Hits committed and acknowledged.",
            self.hits.load(Relaxed),
        );
        counter(
            &mut out,
            "tally_commits_total",
            "Group commits that landed.",
            self.commits.load(Relaxed),
        );
        counter(
            &mut out,
            "tally_commit_failures_total",
            "Group commits that failed (their hits got 503).",
            self.commit_failures.load(Relaxed),
        );
        self.batch_size.render(
            &mut out,
            "tally_commit_batch_size",
            "Hits per group commit.",
        );
        self.commit_seconds.render(
            &mut out,
            "tally_commit_duration_seconds",
            "Time one group commit took in the store.",
        );
        counter(
            &mut out,
            "tally_store_errors_total",
            "Store operations that failed.",
            self.store_errors.load(Relaxed),
        );
        counter(
            &mut out,
            "tally_write_queue_rejections_total",
            "Hits refused with 503 because the write queue was full.",
            self.queue_rejections.load(Relaxed),
        );
        gauge(
            &mut out,
            "tally_write_queue_depth",
            "Hits waiting for a commit.",
            queue_depth as f64,
        );
        gauge(
            &mut out,
            "tally_store_up",
            "1 when the store is migrated and its last operation succeeded.",
            f64::from(u8::from(self.store_ready.load(Relaxed))),
        );
        counter(
            &mut out,
            "tally_rate_limited_total",
            "Hits refused with 429 because their client was over its rate.",
            self.rate_limited.load(Relaxed),
        );
        counter(
            &mut out,
            "tally_read_rate_limited_total",
            "Reads refused with 429 because their client was over TALLY_READ_RATE_LIMIT.",
            self.read_limited.load(Relaxed),
        );
        gauge(
            &mut out,
            "tally_http_connections_open",
            "Client connections open.",
            self.connections_open.load(Relaxed) as f64,
        );
        counter(
            &mut out,
            "tally_http_connections_refused_total",
            "Connections closed at once because TALLY_MAX_CONNECTIONS and the probe slots were taken.",
            self.connections_refused.load(Relaxed),
        );
        counter(
            &mut out,
            "tally_http_connections_timed_out_total",
            "Connections closed because a client was idle or slow past a timeout.",
            self.connections_timed_out.load(Relaxed),
        );
        counter(
            &mut out,
            "tally_http_connections_evicted_total",
            "Idle or slow connections closed to make room for a new one at TALLY_MAX_CONNECTIONS.",
            self.connections_evicted.load(Relaxed),
        );
        out
    }
}

#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
    );
}

/// A fixed-bucket histogram. Observations are stored as integers (`scale`
/// units per unit: nanoseconds for seconds) so the sum stays an atomic add.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound plus the +Inf bucket, not cumulative.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    scale: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64], scale: f64) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn observe(&self, scaled: u64) {
        let value = scaled as f64 / self.scale;
        let i = self.bounds.partition_point(|b| *b < value);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(scaled, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            match self.bounds.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum.load(Relaxed) as f64 / self.scale;
        let _ = write!(out, "{name}_sum {sum}\n{name}_count {cumulative}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_histogram_counts_and_sums_exactly() {
        let m = Metrics::default();
        m.commit(1, Duration::from_micros(300), true);
        m.commit(3, Duration::from_millis(2), true);
        m.commit(5, Duration::from_millis(2), false);
        let text = m.render(7);
        assert!(text.contains("tally_commit_batch_size_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("tally_commit_batch_size_bucket{le=\"2\"} 1\n"));
        assert!(text.contains("tally_commit_batch_size_bucket{le=\"4\"} 2\n"));
        assert!(text.contains("tally_commit_batch_size_sum 4\n"));
        assert!(text.contains("tally_commit_batch_size_count 2\n"));
        assert!(text.contains("tally_hits_total 4\n"));
        assert!(text.contains("tally_commit_failures_total 1\n"));
        assert!(text.contains("tally_commit_duration_seconds_count 3\n"));
        assert!(text.contains("tally_write_queue_depth 7\n"));
    }

    #[test]
    fn responses_are_bucketed_by_class() {
        let m = Metrics::default();
        let _first = m.request_started();
        drop(m.request_started());
        m.response(200, Duration::ZERO);
        m.response(204, Duration::ZERO);
        m.response(404, Duration::ZERO);
        m.response(503, Duration::ZERO);
        let text = m.render(0);
        assert!(text.contains("tally_http_responses_total{class=\"2xx\"} 2\n"));
        assert!(text.contains("tally_http_responses_total{class=\"4xx\"} 1\n"));
        assert!(text.contains("tally_http_responses_total{class=\"5xx\"} 1\n"));
        assert!(text.contains("tally_http_request_duration_seconds_count 4\n"));
        assert!(text.contains("tally_http_requests_in_flight 1\n"));
    }
}
