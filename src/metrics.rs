//! Process metrics in a `prometheus-client` registry, encoded in the
//! Prometheus text format (version 0.0.4) at `/metrics`.
//!
//! Counters and gauges are the library's atomics, so counting a request
//! never takes a lock. The response counters by class and the histograms
//! are small metric types of this module on the same atomics, encoded by
//! the library: its `Family` takes a read lock to find a labelled counter,
//! and its `Histogram` locks a mutex on every observation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    responses: ByClass,
    in_flight: Gauge,
    request_seconds: Histogram,
    /// Hits acknowledged after commit.
    hits: Counter,
    commits: Counter,
    commit_failures: Counter,
    batch_size: Histogram,
    commit_seconds: Histogram,
    store_errors: Counter,
    queue_rejections: Counter,
    /// Set from the write queue itself at each scrape.
    queue_depth: Gauge,
    store_up: Gauge,
    rate_limited: Counter,
    read_limited: Counter,
    /// Hits from bots, answered and not counted, by site. Only sites that
    /// exist get a label, so there are never more series than sites; the
    /// metric is in `/metrics` from the first such hit on.
    bot_hits_ignored: Family<SiteLabel, Counter>,
    connections_open: Gauge,
    connections_refused: Counter,
    connections_timed_out: Counter,
    connections_evicted: Counter,
    page_overflow_hits: Counter,
}

/// The `site` label: a site's slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

/// HTTP responses by status class (1xx..5xx), one `class` label each.
#[derive(Debug, Clone, Default)]
struct ByClass([Counter; 5]);

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

const SECONDS_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            responses: ByClass::default(),
            in_flight: Gauge::default(),
            request_seconds: Histogram::new(SECONDS_BOUNDS, 1e9),
            hits: Counter::default(),
            commits: Counter::default(),
            commit_failures: Counter::default(),
            batch_size: Histogram::new(BATCH_BOUNDS, 1.0),
            commit_seconds: Histogram::new(SECONDS_BOUNDS, 1e9),
            store_errors: Counter::default(),
            queue_rejections: Counter::default(),
            queue_depth: Gauge::default(),
            store_up: Gauge::default(),
            rate_limited: Counter::default(),
            read_limited: Counter::default(),
            bot_hits_ignored: Family::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            connections_timed_out: Counter::default(),
            connections_evicted: Counter::default(),
            page_overflow_hits: Counter::default(),
        };
        // Counters are named without `_total`, which the encoder appends;
        // the registry appends the full stop to each help text.
        let r = &mut m.registry;
        r.register(
            "tally_http_responses",
            "HTTP responses by status class",
            m.responses.clone(),
        );
        r.register(
            "tally_http_requests_in_flight",
            "Requests received and not yet answered",
            m.in_flight.clone(),
        );
        r.register(
            "tally_http_request_duration_seconds",
            "Time from request to response",
            m.request_seconds.clone(),
        );
        r.register(
            "tally_hits",
            "Hits committed and acknowledged",
            m.hits.clone(),
        );
        r.register(
            "tally_commits",
            "Group commits that landed",
            m.commits.clone(),
        );
        r.register(
            "tally_commit_failures",
            "Group commits that failed (their hits got 503)",
            m.commit_failures.clone(),
        );
        r.register(
            "tally_commit_batch_size",
            "Hits per group commit",
            m.batch_size.clone(),
        );
        r.register(
            "tally_commit_duration_seconds",
            "Time one group commit took in the store",
            m.commit_seconds.clone(),
        );
        r.register(
            "tally_store_errors",
            "Store operations that failed",
            m.store_errors.clone(),
        );
        r.register(
            "tally_write_queue_rejections",
            "Hits refused with 503 because the write queue was full",
            m.queue_rejections.clone(),
        );
        r.register(
            "tally_write_queue_depth",
            "Hits waiting for a commit",
            m.queue_depth.clone(),
        );
        r.register(
            "tally_store_up",
            "1 when the store is migrated and its last operation succeeded",
            m.store_up.clone(),
        );
        r.register(
            "tally_rate_limited",
            "Hits refused with 429 because their client was over its rate",
            m.rate_limited.clone(),
        );
        r.register(
            "tally_read_rate_limited",
            "Reads refused with 429 because their client was over TALLY_READ_RATE_LIMIT",
            m.read_limited.clone(),
        );
        r.register(
            "tally_bot_hits_ignored",
            "Hits from known bots answered as if counted and not counted, by site",
            m.bot_hits_ignored.clone(),
        );
        r.register(
            "tally_http_connections_open",
            "Client connections open",
            m.connections_open.clone(),
        );
        r.register(
            "tally_http_connections_refused",
            "Connections closed at once because TALLY_MAX_CONNECTIONS and the probe slots were taken",
            m.connections_refused.clone(),
        );
        r.register(
            "tally_http_connections_timed_out",
            "Connections closed because a client was idle or slow past a timeout",
            m.connections_timed_out.clone(),
        );
        r.register(
            "tally_http_connections_evicted",
            "Idle or slow connections closed to make room for a new one at TALLY_MAX_CONNECTIONS",
            m.connections_evicted.clone(),
        );
        r.register(
            "tally_page_overflow_hits",
            "Hits counted on a site's overflow page because the site had TALLY_PAGE_LIMIT pages",
            m.page_overflow_hits.clone(),
        );
        m
    }
}

impl Metrics {
    /// Where other parts (the cache) register their own metrics, before
    /// the first scrape.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts a request as in flight until the guard drops (which also
    /// happens when the client goes away mid-request).
    pub fn request_started(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn response(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses.0[class].inc();
        self.request_seconds.observe_duration(elapsed);
    }

    /// One group commit: its size, how long it took, whether it landed.
    pub fn commit(&self, batch: usize, elapsed: Duration, ok: bool) {
        self.commit_seconds.observe_duration(elapsed);
        if ok {
            self.commits.inc();
            self.batch_size.observe(batch as u64);
            self.hits.inc_by(batch as u64);
        } else {
            self.commit_failures.inc();
        }
    }

    /// Hits that named a new page past their site's page limit.
    pub fn pages_overflowed(&self, hits: u64) {
        self.page_overflow_hits.inc_by(hits);
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    pub fn queue_rejection(&self) {
        self.queue_rejections.inc();
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    pub fn read_limited(&self) {
        self.read_limited.inc();
    }

    /// A bot's hit on `site` (a site that exists) answered and not counted.
    pub fn bot_hit_ignored(&self, site: &str) {
        self.bot_hits_ignored
            .get_or_create(&SiteLabel {
                site: site.to_owned(),
            })
            .inc();
    }

    /// Counts a client connection as open until the guard drops.
    pub fn connection_opened(&self) -> InFlight<'_> {
        self.connections_open.inc();
        InFlight(&self.connections_open)
    }

    /// A connection closed at once: every slot, probe slots too, was taken.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A connection closed because its phase's deadline passed.
    pub fn connection_timed_out(&self) {
        self.connections_timed_out.inc();
    }

    /// A connection without a whole request pushed out for a new one.
    pub fn connection_evicted(&self) {
        self.connections_evicted.inc();
    }

    pub fn set_store_ready(&self, ready: bool) {
        self.store_up.set(i64::from(ready));
    }

    /// Hits acknowledged so far (committed and answered).
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// The registry in the Prometheus text format; `queue_depth` is read by
    /// the caller from the write queue itself.
    pub fn render(&self, queue_depth: usize) -> String {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[derive(Debug)]
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl EncodeMetric for ByClass {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        for (class, counter) in CLASSES.into_iter().zip(&self.0) {
            counter.encode(encoder.encode_family(&[("class", class)])?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A fixed-bucket histogram on atomics. Observations are stored as integers
/// (`scale` units per unit: nanoseconds for seconds) so the sum stays an
/// atomic add. Clones share their counts, as the library's metrics do.
#[derive(Debug, Clone)]
struct Histogram(Arc<HistogramCounts>);

#[derive(Debug)]
struct HistogramCounts {
    bounds: &'static [f64],
    /// One counter per bound plus the +Inf bucket, not cumulative.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    scale: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64], scale: f64) -> Self {
        Histogram(Arc::new(HistogramCounts {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }))
    }

    fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn observe(&self, scaled: u64) {
        let h = &self.0;
        let value = scaled as f64 / h.scale;
        let i = h.bounds.partition_point(|b| *b < value);
        h.buckets[i].fetch_add(1, Relaxed);
        h.sum.fetch_add(scaled, Relaxed);
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let h = &self.0;
        // The encoder adds the +Inf bucket itself, holding the total count.
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .zip(&h.buckets)
            .map(|(le, n)| (*le, n.load(Relaxed)))
            .collect();
        let overflow = h.buckets[h.bounds.len()].load(Relaxed);
        let count = buckets.iter().map(|(_, n)| n).sum::<u64>() + overflow;
        let sum = h.sum.load(Relaxed) as f64 / h.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `(name, type)` of every `# TYPE` line of a rendering, in order.
#[cfg(test)]
pub(crate) fn types(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that each of `lines` is a whole line of `text`.
    fn has(text: &str, lines: &[impl AsRef<str>]) {
        for line in lines.iter().map(AsRef::as_ref) {
            assert!(
                text.contains(&format!("\n{line}\n")),
                "no {line:?} in {text}"
            );
        }
    }

    #[test]
    fn a_fresh_registry_names_every_metric_once_with_its_type() {
        let text = Metrics::default().render(0);
        assert_eq!(
            types(&text),
            [
                ("tally_http_responses_total", "counter"),
                ("tally_http_requests_in_flight", "gauge"),
                ("tally_http_request_duration_seconds", "histogram"),
                ("tally_hits_total", "counter"),
                ("tally_commits_total", "counter"),
                ("tally_commit_failures_total", "counter"),
                ("tally_commit_batch_size", "histogram"),
                ("tally_commit_duration_seconds", "histogram"),
                ("tally_store_errors_total", "counter"),
                ("tally_write_queue_rejections_total", "counter"),
                ("tally_write_queue_depth", "gauge"),
                ("tally_store_up", "gauge"),
                ("tally_rate_limited_total", "counter"),
                ("tally_read_rate_limited_total", "counter"),
                ("tally_http_connections_open", "gauge"),
                ("tally_http_connections_refused_total", "counter"),
                ("tally_http_connections_timed_out_total", "counter"),
                ("tally_http_connections_evicted_total", "counter"),
                ("tally_page_overflow_hits_total", "counter"),
            ],
            "{text}"
        );
        // One HELP per metric, its text ending in a single full stop.
        let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
        assert_eq!(helps.len(), 19, "{text}");
        assert!(
            helps.iter().all(|h| h.ends_with('.') && !h.ends_with("..")),
            "{text}"
        );
        assert!(text.contains(
            "# HELP tally_commit_failures_total Group commits that failed (their hits got 503).\n"
        ));
        assert!(text.contains("\ntally_store_up 0\n"), "{text}");
    }

    #[test]
    fn batch_histogram_counts_and_sums_exactly() {
        let m = Metrics::default();
        m.commit(1, Duration::from_micros(300), true);
        m.commit(3, Duration::from_millis(2), true);
        m.commit(5, Duration::from_millis(2), false);
        let text = m.render(7);
        has(
            &text,
            &[
                "tally_commit_batch_size_bucket{le=\"1\"} 1",
                "tally_commit_batch_size_bucket{le=\"2\"} 1",
                "tally_commit_batch_size_bucket{le=\"4\"} 2",
                "tally_commit_batch_size_bucket{le=\"4096\"} 2",
                "tally_commit_batch_size_bucket{le=\"+Inf\"} 2",
                "tally_commit_batch_size_sum 4.0",
                "tally_commit_batch_size_count 2",
                "tally_hits_total 4",
                "tally_commits_total 2",
                "tally_commit_failures_total 1",
                "tally_commit_duration_seconds_bucket{le=\"0.0005\"} 1",
                "tally_commit_duration_seconds_bucket{le=\"0.0025\"} 3",
                "tally_commit_duration_seconds_sum 0.0043",
                "tally_commit_duration_seconds_count 3",
                "tally_write_queue_depth 7",
            ],
        );
        assert_eq!(m.hits(), 4);
    }

    #[test]
    fn observations_past_the_last_bound_count_only_in_inf() {
        let m = Metrics::default();
        m.commit(5000, Duration::from_secs(6), true);
        let text = m.render(0);
        for (le, n) in [("4096", 0), ("+Inf", 1)] {
            has(
                &text,
                &[format!("tally_commit_batch_size_bucket{{le=\"{le}\"}} {n}")],
            );
        }
        for (le, n) in [("5", 0), ("+Inf", 1)] {
            has(
                &text,
                &[format!(
                    "tally_commit_duration_seconds_bucket{{le=\"{le}\"}} {n}"
                )],
            );
        }
        has(&text, &["tally_commit_duration_seconds_sum 6.0"]);
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
        // Every class, in order, right under the TYPE line.
        let (_, after) = text
            .split_once("# TYPE tally_http_responses_total counter\n")
            .unwrap();
        let by_class: Vec<&str> = after.lines().take(5).collect();
        let want = [("1xx", 0), ("2xx", 2), ("3xx", 0), ("4xx", 1), ("5xx", 1)]
            .map(|(class, n)| format!("tally_http_responses_total{{class=\"{class}\"}} {n}"));
        assert_eq!(by_class, want, "{text}");
        has(&text, &["tally_http_request_duration_seconds_count 4"]);
        has(&text, &["tally_http_requests_in_flight 1"]);
    }

    #[test]
    fn ignored_bot_hits_are_counted_per_site() {
        let m = Metrics::default();
        assert!(!m.render(0).contains("tally_bot_hits_ignored"));
        m.bot_hit_ignored("blog");
        m.bot_hit_ignored("blog");
        m.bot_hit_ignored("example.com");
        let text = m.render(0);
        has(
            &text,
            &[
                "tally_bot_hits_ignored_total{site=\"blog\"} 2",
                "tally_bot_hits_ignored_total{site=\"example.com\"} 1",
            ],
        );
        assert_eq!(text.matches("\ntally_bot_hits_ignored_total{").count(), 2);
        assert!(
            types(&text).contains(&("tally_bot_hits_ignored_total", "counter")),
            "{text}"
        );
        assert!(text.contains(
            "# HELP tally_bot_hits_ignored_total Hits from known bots answered as if counted \
             and not counted, by site.\n"
        ));
    }

    #[test]
    fn open_connections_and_store_state_are_gauges() {
        let m = Metrics::default();
        let open = m.connection_opened();
        m.set_store_ready(true);
        assert!(m.render(0).contains("\ntally_http_connections_open 1\n"));
        drop(open);
        let text = m.render(0);
        has(
            &text,
            &["tally_http_connections_open 0", "tally_store_up 1"],
        );
    }
}
