//! Redis as a shared cache that may fail at any moment.
//!
//! - Every call has a deadline (`TALLY_CACHE_TIMEOUT`). The first failure
//!   opens the circuit: from then on nothing calls Redis, reads go to the
//!   store, and a background probe reconnects every 200 ms, so tally uses
//!   Redis again within a fraction of a second of its return.
//! - Cached counts live under a namespace named by the Redis server's
//!   `run_id`. A Redis restarted empty has a new one; so does a Redis
//!   restarted from an old snapshot, whose stale counts therefore sit in a
//!   namespace nobody reads (they expire).
//! - Counts are written by a compare-and-set script that keeps the larger
//!   `(generation, count)`, so no late, repeated or reordered publish moves
//!   a cached count backwards. Publishes that could not be delivered are
//!   kept and sent again when Redis is back.
//! - Nothing on the hit path waits for Redis: publishes, unique visitors
//!   and rate-limit totals are delivered by one background task.
//! - `rediss://` is TLS (rustls with ring), verified against
//!   `TALLY_REDIS_CA_FILE` or else the bundled public roots; it never falls
//!   back to plain text. A failed handshake or a refused user or password
//!   is one more way for Redis to be down: the circuit stays open, the
//!   store answers, and the reason is logged once, naming the setting to
//!   fix.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, Script, TlsCertificates};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::{Cache, CacheStatus, random_salt, visitor_hash};
use crate::domain::time::Day;
use crate::domain::{SiteId, Versioned};
use crate::domain::{UNIQUE_DAYS_KEPT, Visitor};
use crate::limit::{Delta, Limiter};
use crate::secret::redact_url;
use crate::sync::lock;

const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How often rate-limit counts are exchanged with the other replicas.
const SYNC_EVERY: Duration = Duration::from_millis(100);
/// Cached counts expire when their site has not been hit for this long.
const COUNT_TTL_SECS: u64 = 3600;
/// Visits waiting for delivery at most; past this they are dropped.
const MAX_PENDING_VISITS: usize = 100_000;

/// Keeps the larger of the cached and the offered `generation:count` for
/// each key. Lua numbers are doubles, exact up to 2^53, which is tally's
/// largest count.
const PUBLISH: &str = r"
for i, key in ipairs(KEYS) do
  local g = tonumber(ARGV[2 * i - 1])
  local c = tonumber(ARGV[2 * i])
  local cur = redis.call('GET', key)
  local newer = true
  if cur then
    local sep = string.find(cur, ':', 1, true)
    local cg = tonumber(string.sub(cur, 1, sep - 1))
    local cc = tonumber(string.sub(cur, sep + 1))
    newer = g > cg or (g == cg and c > cc)
  end
  if newer then
    redis.call('SET', key, ARGV[2 * i - 1] .. ':' .. ARGV[2 * i], 'EX', ARGV[#ARGV])
  else
    redis.call('EXPIRE', key, ARGV[#ARGV])
  end
end
return #KEYS
";

#[derive(Debug)]
pub struct RedisCache {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    client: redis::Client,
    timeout: Duration,
    /// The live connection and the server's run id, while the circuit is closed.
    link: Mutex<Option<Link>>,
    /// 1 while the circuit is closed (Redis answers and is used), else 0;
    /// also the `tally_cache_up` gauge.
    up: Gauge,
    wake_probe: Notify,
    wake_flush: Notify,
    publish: Script,
    pending: Mutex<HashMap<SiteId, Versioned>>,
    forgotten: Mutex<Vec<SiteId>>,
    visits: Mutex<Vec<(SiteId, Day, u64)>>,
    /// Salts learned from Redis (shared by every replica), by day.
    salts: Mutex<HashMap<Day, [u8; 16]>>,
    limiter: Arc<Limiter>,
    errors: Counter,
    dropped_visits: Counter,
    /// Count reads that Redis answered with a count, and without one.
    hits: Counter,
    misses: Counter,
    /// Why Redis is down, as last logged; `None` while it is up, so each
    /// change of state is logged once.
    reported: Mutex<Option<Cause>>,
    /// What a TLS connection trusts, for the log of a failed handshake.
    trust: Arc<str>,
    /// The URL's ACL user, for the log of a refused one.
    user: Option<Arc<str>>,
}

#[derive(Clone)]
struct Link {
    conn: MultiplexedConnection,
    namespace: Arc<str>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("up", &self.is_up())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Starts with the circuit open; the probe connects in the background,
    /// so a Redis that is down at start-up delays nothing. Settings that
    /// cannot work (a URL that does not parse, a CA file that cannot be
    /// read) are errors here, naming the setting.
    pub fn start(
        url: &str,
        ca_file: Option<&Path>,
        timeout: Duration,
        limiter: Arc<Limiter>,
    ) -> anyhow::Result<Self> {
        let client = client(url, ca_file)?;
        let tls = matches!(
            client.get_connection_info().addr(),
            ConnectionAddr::TcpTls { .. }
        );
        let trust: Arc<str> = match (tls, ca_file) {
            (false, _) => "none (plain text)".into(),
            (true, Some(path)) => format!("TALLY_REDIS_CA_FILE {}", path.display()).into(),
            (true, None) => "the bundled public roots (no TALLY_REDIS_CA_FILE)".into(),
        };
        let user = client
            .get_connection_info()
            .redis_settings()
            .username()
            .map(Arc::from);
        tracing::info!(redis = %redact_url(url), tls, trust = %trust, "Redis cache configured");
        let shared = Arc::new(Shared {
            client,
            timeout,
            link: Mutex::new(None),
            up: Gauge::default(),
            wake_probe: Notify::new(),
            wake_flush: Notify::new(),
            publish: Script::new(PUBLISH),
            pending: Mutex::new(HashMap::new()),
            forgotten: Mutex::new(Vec::new()),
            visits: Mutex::new(Vec::new()),
            salts: Mutex::new(HashMap::new()),
            limiter,
            errors: Counter::default(),
            dropped_visits: Counter::default(),
            hits: Counter::default(),
            misses: Counter::default(),
            reported: Mutex::new(None),
            trust,
            user,
        });
        let tasks = vec![
            tokio::spawn(probe(shared.clone())),
            tokio::spawn(flush(shared.clone())),
        ];
        Ok(RedisCache { shared, tasks })
    }
}

impl Drop for RedisCache {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    fn is_up(&self) -> bool {
        self.up.get() == 1
    }

    fn link(&self) -> Option<Link> {
        if !self.is_up() {
            return None;
        }
        lock(&self.link).clone()
    }

    /// Runs one Redis operation under the deadline; any failure opens the
    /// circuit.
    async fn call<T>(&self, op: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match timeout(self.timeout, op).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.trip(Cause::of(&e), &e.to_string());
                None
            }
            Err(_) => {
                self.trip(Cause::Unavailable, "timed out");
                None
            }
        }
    }

    fn trip(&self, cause: Cause, why: &str) {
        self.errors.inc();
        // `set` answers the previous value: only the first failure trips.
        if self.up.set(0) == 1 {
            lock(&self.link).take();
            self.report(cause, why);
            self.wake_probe.notify_one();
        }
    }

    /// Logs why Redis is not used, once per change of reason. `why` is the
    /// Redis client's error, which names no password.
    fn report(&self, cause: Cause, why: &str) {
        let mut reported = lock(&self.reported);
        if *reported == Some(cause) {
            return;
        }
        *reported = Some(cause);
        match cause {
            Cause::Unavailable => tracing::warn!(
                error = why,
                "Redis unavailable; serving from the store alone until it is back"
            ),
            Cause::Tls => tracing::warn!(
                error = why,
                trust = %self.trust,
                "TLS to Redis failed (is TALLY_REDIS_CA_FILE the CA of its certificate?); \
                 serving from the store alone until a handshake succeeds"
            ),
            Cause::Refused => tracing::warn!(
                error = why,
                user = self.user.as_deref().unwrap_or("default"),
                "Redis refused the user or password of TALLY_REDIS_URL; \
                 serving from the store alone until it accepts them"
            ),
        }
    }

    fn salt(&self, day: Day) -> Option<[u8; 16]> {
        lock(&self.salts).get(&day).copied()
    }
}

/// Why Redis cannot be used, as far as the fix goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Down, unreachable, slow, restarting: nothing to fix in tally.
    Unavailable,
    /// The TLS handshake failed: the server's certificate is not trusted
    /// (or the server speaks no TLS on that port).
    Tls,
    /// Redis refused the URL's user or password, or a command to that user.
    Refused,
}

impl Cause {
    fn of(e: &redis::RedisError) -> Cause {
        if e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        {
            Cause::Refused
        } else if is_tls_failure(e) {
            Cause::Tls
        } else {
            Cause::Unavailable
        }
    }
}

/// Whether rustls failed the connection: the client keeps the I/O error
/// of the handshake, whose inner error is rustls'.
fn is_tls_failure(e: &redis::RedisError) -> bool {
    type Inner = Arc<dyn std::error::Error + Send + Sync>;
    let Some(source) = std::error::Error::source(e) else {
        return false;
    };
    let io = source
        .downcast_ref::<std::io::Error>()
        .or_else(|| source.downcast_ref::<Inner>()?.downcast_ref());
    io.and_then(std::io::Error::get_ref)
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

/// The Redis client for `url`: plain text for `redis://`; for `rediss://`,
/// TLS that trusts the CA in `ca_file`, or else the bundled public roots.
fn client(url: &str, ca_file: Option<&Path>) -> anyhow::Result<redis::Client> {
    let invalid = || format!("invalid TALLY_REDIS_URL {}", redact_url(url));
    // The client's errors name what is wrong, never the URL itself.
    let client = redis::Client::open(url)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(invalid)?;
    match (client.get_connection_info().addr(), ca_file) {
        (ConnectionAddr::TcpTls { insecure: true, .. }, _) => Err(anyhow::anyhow!(
            "#insecure (no certificate check) is not supported; give the server's CA in \
             TALLY_REDIS_CA_FILE instead"
        ))
        .with_context(invalid),
        (ConnectionAddr::TcpTls { .. }, ca_file) => {
            crate::tls::install_provider();
            let root_cert = ca_file.map(read_ca_file).transpose()?;
            redis::Client::build_with_tls(
                url,
                TlsCertificates {
                    client_tls: None,
                    root_cert,
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(invalid)
        }
        (_, Some(_)) => anyhow::bail!(
            "TALLY_REDIS_CA_FILE is set but the Redis URL ({}) is not rediss://: \
             use rediss:// for TLS, or unset TALLY_REDIS_CA_FILE",
            redact_url(url)
        ),
        (_, None) => Ok(client),
    }
}

/// The PEM certificates of `path`, checked to be usable as trust anchors.
/// Errors name the setting and the file, never what is in it.
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let setting = || format!("TALLY_REDIS_CA_FILE {}", path.display());
    let pem = std::fs::read(path).with_context(|| format!("{}: cannot read it", setting()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|_| anyhow::anyhow!("{}: not a PEM certificate file", setting()))?;
        roots
            .add(cert)
            .map_err(|_| anyhow::anyhow!("{}: holds a certificate that is not valid", setting()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{}: holds no PEM certificate", setting());
    }
    Ok(pem)
}

fn count_key(namespace: &str, site: SiteId) -> String {
    format!("tally:{namespace}:count:{site}")
}

/// Reconnects whenever the circuit is open.
async fn probe(shared: Arc<Shared>) {
    loop {
        let wake = shared.wake_probe.notified();
        if shared.is_up() {
            wake.await;
            continue;
        }
        match timeout(
            shared.timeout.max(Duration::from_millis(500)),
            connect(&shared),
        )
        .await
        {
            Ok(Ok(link)) => {
                tracing::info!(namespace = %link.namespace, "Redis is up; using it as the cache");
                lock(&shared.reported).take();
                *lock(&shared.link) = Some(link);
                shared.up.set(1);
                // Deliver what piled up while it was away.
                shared.wake_flush.notify_one();
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "Redis probe failed");
                shared.report(Cause::of(&e), &e.to_string());
            }
            Err(_) => {
                tracing::debug!("Redis probe timed out");
                shared.report(Cause::Unavailable, "timed out");
            }
        }
        sleep(PROBE_EVERY).await;
    }
}

async fn connect(shared: &Shared) -> redis::RedisResult<Link> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.timeout.max(Duration::from_millis(200))))
        .set_response_timeout(Some(shared.timeout));
    let mut conn = shared
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    let run_id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Client, "INFO has no run_id")))?;
    Ok(Link {
        conn,
        namespace: run_id.into(),
    })
}

/// Delivers publishes, forgets, visits and rate-limit counts.
async fn flush(shared: Arc<Shared>) {
    let mut last_sync = Instant::now();
    loop {
        tokio::select! {
            () = shared.wake_flush.notified() => {}
            () = sleep(SYNC_EVERY) => {}
        }
        let Some(link) = shared.link() else {
            // Down: visits cannot be hashed consistently; count them as lost.
            let lost = std::mem::take(&mut *lock(&shared.visits)).len();
            shared.dropped_visits.inc_by(lost as u64);
            continue;
        };
        deliver_counts(&shared, &link).await;
        ensure_salts(&shared, &link).await;
        if last_sync.elapsed() >= SYNC_EVERY {
            last_sync = Instant::now();
            deliver_visits(&shared, &link).await;
            sync_limits(&shared, &link).await;
        }
    }
}

async fn deliver_counts(shared: &Shared, link: &Link) {
    let pending = std::mem::take(&mut *lock(&shared.pending));
    let forgotten = std::mem::take(&mut *lock(&shared.forgotten));
    if pending.is_empty() && forgotten.is_empty() {
        return;
    }
    let mut conn = link.conn.clone();
    let mut ok = true;
    if !pending.is_empty() {
        let mut invocation = shared.publish.prepare_invoke();
        for (site, v) in &pending {
            invocation.key(count_key(&link.namespace, *site));
            invocation.arg(v.generation).arg(v.count);
        }
        invocation.arg(COUNT_TTL_SECS);
        ok = shared
            .call(invocation.invoke_async::<i64>(&mut conn))
            .await
            .is_some();
    }
    if ok && !forgotten.is_empty() {
        let keys: Vec<String> = forgotten
            .iter()
            .map(|s| count_key(&link.namespace, *s))
            .collect();
        ok = shared
            .call(redis::cmd("DEL").arg(keys).query_async::<i64>(&mut conn))
            .await
            .is_some();
    }
    if !ok {
        // Kept for when Redis is back; merging keeps the newest value.
        let mut merged = lock(&shared.pending);
        for (site, v) in pending {
            let cached = merged.entry(site).or_insert(v);
            *cached = (*cached).max(v);
        }
        lock(&shared.forgotten).extend(forgotten);
    }
}

/// Today's and tomorrow's salts, shared by all replicas through Redis: the
/// first replica to ask sets a random one (SET NX), everyone reads it back.
/// Tomorrow's is fetched ahead so the first visits after midnight count.
async fn ensure_salts(shared: &Shared, link: &Link) {
    let today = crate::domain::time::today();
    for day in [today, today + 1] {
        if shared.salt(day).is_some() {
            continue;
        }
        let key = format!("tally:salt:{day}");
        let fresh = random_salt();
        let mut conn = link.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(&fresh[..])
            .arg("NX")
            .arg("EX")
            .arg(3 * 86_400)
            .ignore()
            .cmd("GET")
            .arg(&key);
        let Some((salt,)) = shared.call(pipe.query_async::<(Vec<u8>,)>(&mut conn)).await else {
            return;
        };
        if let Ok(salt) = <[u8; 16]>::try_from(salt.as_slice()) {
            let mut salts = lock(&shared.salts);
            salts.retain(|d, _| *d >= today - 1);
            salts.insert(day, salt);
        }
    }
}

async fn deliver_visits(shared: &Shared, link: &Link) {
    let visits = std::mem::take(&mut *lock(&shared.visits));
    if visits.is_empty() {
        return;
    }
    let mut by_key: HashMap<(SiteId, Day), Vec<Vec<u8>>> = HashMap::new();
    for (site, day, hash) in &visits {
        by_key
            .entry((*site, *day))
            .or_default()
            .push(hash.to_le_bytes().to_vec());
    }
    let mut pipe = redis::pipe();
    for ((site, day), hashes) in &by_key {
        let key = format!("tally:uniques:{site}:{day}");
        pipe.cmd("PFADD").arg(&key).arg(hashes).ignore();
        pipe.cmd("EXPIRE")
            .arg(&key)
            .arg(UNIQUE_DAYS_KEPT * 86_400)
            .ignore();
    }
    let mut conn = link.conn.clone();
    if shared
        .call(pipe.query_async::<()>(&mut conn))
        .await
        .is_none()
    {
        shared.dropped_visits.inc_by(visits.len() as u64);
    }
}

async fn sync_limits(shared: &Shared, link: &Link) {
    if !shared.limiter.enabled() {
        return;
    }
    let deltas: Vec<Delta> = shared.limiter.take_deltas();
    if deltas.is_empty() {
        return;
    }
    let ttl = 2 * shared.limiter.window_secs();
    let mut pipe = redis::pipe();
    for d in &deltas {
        let key = format!("tally:ratelimit:{}:{}", d.window, d.client);
        pipe.cmd("INCRBY").arg(&key).arg(d.hits);
        pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
    }
    let mut conn = link.conn.clone();
    match shared.call(pipe.query_async::<Vec<u64>>(&mut conn)).await {
        Some(totals) => {
            for (d, total) in deltas.iter().zip(totals) {
                shared.limiter.learn(d.client, d.window, total);
            }
        }
        None => shared.limiter.restore(&deltas),
    }
}

#[async_trait]
impl Cache for RedisCache {
    fn status(&self) -> CacheStatus {
        CacheStatus {
            backend: "redis",
            up: self.shared.is_up(),
        }
    }

    async fn count(&self, site: SiteId) -> Option<Versioned> {
        let link = self.shared.link()?;
        let mut conn = link.conn.clone();
        let key = count_key(&link.namespace, site);
        let value: Option<String> = self
            .shared
            .call(redis::cmd("GET").arg(key).query_async(&mut conn))
            .await?;
        let counter = if value.is_some() {
            &self.shared.hits
        } else {
            &self.shared.misses
        };
        counter.inc();
        let (generation, count) = value?
            .split_once(':')
            .and_then(|(g, c)| Some((g.parse().ok()?, c.parse().ok()?)))?;
        Some(Versioned { generation, count })
    }

    fn publish(&self, site: SiteId, value: Versioned) {
        {
            let mut pending = lock(&self.shared.pending);
            let cached = pending.entry(site).or_insert(value);
            *cached = (*cached).max(value);
        }
        self.shared.wake_flush.notify_one();
    }

    fn forget(&self, site: SiteId) {
        lock(&self.shared.pending).remove(&site);
        lock(&self.shared.forgotten).push(site);
        self.shared.wake_flush.notify_one();
    }

    fn visit(&self, site: SiteId, visitor: &Visitor) {
        let day = crate::domain::time::today();
        let Some(salt) = self.shared.salt(day) else {
            self.shared.dropped_visits.inc();
            return;
        };
        let hash = visitor_hash(&salt, site, visitor);
        let mut visits = lock(&self.shared.visits);
        if visits.len() < MAX_PENDING_VISITS {
            visits.push((site, day, hash));
        } else {
            self.shared.dropped_visits.inc();
        }
    }

    async fn uniques(&self, site: SiteId, days: &[Day]) -> Option<Vec<u64>> {
        let link = self.shared.link()?;
        let mut pipe = redis::pipe();
        for day in days {
            pipe.cmd("PFCOUNT")
                .arg(format!("tally:uniques:{site}:{day}"));
        }
        let mut conn = link.conn.clone();
        self.shared.call(pipe.query_async(&mut conn)).await
    }

    fn register_metrics(&self, registry: &mut Registry) {
        let s = &self.shared;
        registry.register(
            "tally_cache_errors",
            "Redis calls that failed or timed out",
            s.errors.clone(),
        );
        registry.register(
            "tally_cache_hits",
            "Count reads answered by Redis",
            s.hits.clone(),
        );
        registry.register(
            "tally_cache_misses",
            "Count reads Redis had no count for (read from the store, then cached)",
            s.misses.clone(),
        );
        registry.register(
            "tally_uniques_dropped",
            "Visits not recorded for unique counts (Redis down or backlog full)",
            s.dropped_visits.clone(),
        );
        registry
            .sub_registry_with_label(("backend".into(), "redis".into()))
            .register(
                "tally_cache_up",
                "1 when Redis answers and is used",
                s.up.clone(),
            );
    }
}

#[cfg(test)]
mod tests;
