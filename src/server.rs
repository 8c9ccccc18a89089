//! Building the application and serving it until a shutdown future resolves.
//!
//! [`Application::build`] wires store, counting services and router from settings;
//! [`Application::serve`] takes any bound listener and any shutdown future,
//! so tests bind port 0 and stop the server when they like.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout_at};

use crate::bots::Bots;
use crate::cache::{self, Cache};
use crate::config::{self, ServeSettings};
use crate::counting::new_pages::NewPageBudget;
use crate::counting::{Services, WriterSettings, retention};
use crate::http::{self, AppState};
use crate::limit::ClientLimits;
use crate::listener::{self, Limits};
use crate::metrics::Metrics;
use crate::secret::redact_url;
use crate::store::migrate::Contracts;
use crate::store::{self, Backend, Store, StoreError};

#[derive(Debug)]
pub struct Application {
    state: Arc<AppState>,
    router: Router,
    migrations: JoinHandle<()>,
    /// Why the store refused the connection settings at start-up, once it has.
    refused: watch::Receiver<Option<String>>,
    purge: JoinHandle<()>,
    retention: JoinHandle<()>,
    sweep: JoinHandle<()>,
    grace: Duration,
    limits: Limits,
    /// Held until `serve` returns: no other process serves this SQLite file.
    owner: Option<store::Owner>,
    store: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
}

impl Application {
    /// Opens the store and starts the writer. Migrations run in the
    /// background, retried until the store answers, so a database that is
    /// down at start-up delays readiness instead of crash-looping.
    pub fn build(settings: &ServeSettings) -> anyhow::Result<Application> {
        config::validate(settings)?;
        // Before anything is opened: a bad token is a setting to fix.
        let admin_token = settings.admin_token()?;
        let url = settings.store.database_url()?;
        // Before opening: a refused second process must not touch the file.
        let owner = store::claim(&url)?;
        let store = store::open(&url, &settings.store)?;
        tracing::info!(store = %redact_url(url.expose()), "using {} store", store.backend().name());

        let backend = store.backend();
        let limits = Arc::new(ClientLimits::new(
            settings.cache.rate_limit,
            settings.read_rate_limit,
            settings.auth_failure_limit,
        ));
        let cache = cache::open(&settings.cache, backend == Backend::Sqlite, limits.hits())?;
        tracing::info!("using {} cache", cache.status().backend);
        let mut metrics = Metrics::default();
        cache.register_metrics(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        // Read before anything starts: a country database that cannot be
        // read is a setting to fix.
        let audience = if settings.breakdowns {
            let audience = crate::audience::Audience::new(settings.geoip_db.as_deref())?;
            if !audience.has_countries() {
                tracing::info!("no TALLY_GEOIP_DB: every hit's country is (unknown)");
            }
            Some(Arc::new(audience))
        } else {
            None
        };
        let counting = Arc::new(Services::start(
            store.clone(),
            cache.clone(),
            WriterSettings {
                queue: settings.write_queue as usize,
                max_batch: settings.max_batch as usize,
                store_timeout: settings.store.store_timeout,
                page_limit: i64::from(settings.page_limit),
                value_limit: i64::from(settings.breakdown_limit),
                new_pages: NewPageBudget {
                    per_client: u64::from(settings.new_pages_per_client),
                    per_site: u64::from(settings.new_pages_per_site),
                    window: settings.new_page_window,
                },
            },
            metrics.clone(),
            audience,
        ));
        let (refuse, refused) = watch::channel(None);
        let migrations = tokio::spawn(migrate_until_ready(
            counting.clone(),
            Instant::now(),
            refuse,
        ));
        let purge = tokio::spawn(purge_request_ids(counting.clone()));
        let retention = tokio::spawn(retention::run(counting.clone(), settings.series_retention));
        let state = Arc::new(AppState {
            counting,
            greeting: settings.greeting.clone(),
            admin_token,
            proxies: http::client::Proxies {
                trusted: settings.trusted_proxies.clone(),
                real_ip_from: settings.real_ip_from.clone(),
            },
            limits,
            metrics,
            dashboard_public: settings.dashboard_public,
            max_import_bytes: settings.max_import_bytes,
            bots: Bots::new(settings.bot_filter),
        });
        let sweep = tokio::spawn(sweep_limits(state.clone()));
        let router = http::router(state.clone(), settings.max_body_bytes);
        let store_connections = match backend {
            Backend::Postgres => u64::from(settings.store.db_pool_size),
            Backend::Sqlite => 4,
        };
        let limits = Limits {
            max_connections: settings.max_connections as usize,
            header_timeout: settings.header_timeout,
            body_timeout: settings.body_timeout,
            idle_timeout: settings.idle_timeout,
            max_header_bytes: settings.max_header_bytes as usize,
        }
        .fit_to_fd_limit(store_connections);
        Ok(Application {
            state,
            router,
            migrations,
            refused,
            purge,
            retention,
            sweep,
            grace: settings.shutdown_grace,
            limits,
            owner,
            store,
            cache,
        })
    }

    /// The router, for tests that call it without a socket.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The store the application opened, for tests and tools that write
    /// past the counter (hours in the past, a store that another process
    /// changed). What they write is not in the counter's cache.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The cache the application opened, for tests that play a replica
    /// that publishes late.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// Waits until migrations are done (tests and `serve`'s ready log);
    /// fails at once if the store refused the connection settings.
    pub async fn ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while !self.state.counting.health.is_ready() {
            if let Some(why) = self.refused.borrow().as_ref() {
                bail!("cannot connect to the store: {why}");
            }
            if Instant::now() >= deadline {
                bail!("the store was not ready within {within:?}");
            }
            sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Serves until `shutdown` resolves; then stops accepting, closes the
    /// connections that have not delivered a whole request, lets the
    /// requests already read finish, commits every queued hit, and returns.
    /// All of that must fit in the grace period; past it, open connections
    /// are dropped and an error is returned.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            state,
            router,
            migrations,
            mut refused,
            purge,
            retention,
            sweep,
            grace,
            limits,
            owner,
            ..
        } = self;
        let (stop, stopping) = watch::channel(false);
        let server = listener::serve(listener, router, limits, state.metrics.clone(), stopping);
        let mut server = std::pin::pin!(server);
        let refusal = async {
            let why = refused
                .wait_for(Option::is_some)
                .await
                .map(|why| why.clone().unwrap_or_default());
            match why {
                Ok(why) => why,
                // Migrations ended without a refusal: nothing to wait for.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = server.as_mut() => bail!("the listener stopped on its own"),
            why = refusal => {
                // Nothing was counted: the store was never reached.
                purge.abort();
                retention.abort();
                sweep.abort();
                drop(owner);
                bail!("cannot connect to the store: {why}");
            }
            () = shutdown => {}
        }
        tracing::info!("stopping: finishing in-flight requests");
        let deadline = Instant::now() + grace;
        let _ = stop.send(true);
        let drained = timeout_at(deadline, server).await.is_ok();

        migrations.abort();
        purge.abort();
        retention.abort();
        sweep.abort();
        let committed = timeout_at(deadline, state.counting.hits.close())
            .await
            .is_ok();
        // Every hit is committed (or the grace is over): a successor may start.
        drop(owner);
        match (drained, committed) {
            (true, true) => {
                tracing::info!("stopped cleanly");
                Ok(())
            }
            (false, _) => bail!("grace period of {grace:?} over with requests still in flight"),
            (true, false) => {
                bail!("grace period of {grace:?} over with hits still being committed")
            }
        }
    }
}

/// Runs the migrations, retrying while the store is out of reach. A store
/// that refuses the connection settings (TLS) will refuse them on every
/// retry: that is sent on `refused` and ends the retries, so that tally
/// stops at start-up instead of waiting for a server that cannot change.
async fn migrate_until_ready(
    counting: Arc<Services>,
    started: Instant,
    refused: watch::Sender<Option<String>>,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match counting.health.migrate().await {
            Ok(migrated) => {
                if !migrated.applied.is_empty() {
                    tracing::info!(applied = ?migrated.applied, "applied migrations");
                }
                if let Some(held) = &migrated.held {
                    // Not a reason to stay unready: this release's code works
                    // without its contract migrations.
                    tracing::warn!(
                        "{held}\nrun `tally migrate` once no replica of an older release runs"
                    );
                }
                counting.health.set_ready();
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready");
                return;
            }
            Err(StoreError::Refused(why)) => {
                tracing::error!(error = %why, "the store refuses tally's connection settings; stopping");
                let _ = refused.send(Some(why));
                return;
            }
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(error = %why, retry_in = ?delay, "store unavailable; migrations will be retried");
            }
            Err(e) => {
                tracing::error!(error = ?anyhow::Error::from(e), retry_in = ?delay, "migrations failed");
            }
        }
        sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// How long a request id is remembered: far longer than any proxy retries.
const REQUEST_IDS_KEPT: Duration = Duration::from_secs(600);

/// Forgets old request ids once a minute (any replica may; all do).
async fn purge_request_ids(counting: Arc<Services>) {
    loop {
        sleep(Duration::from_secs(60)).await;
        if !counting.health.is_ready() {
            continue;
        }
        let before = std::time::SystemTime::now() - REQUEST_IDS_KEPT;
        match counting.hits.purge_requests(before).await {
            Ok(n) if n > 0 => tracing::debug!(forgotten = n, "purged old request ids"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging old request ids failed"),
        }
    }
}

/// Every few seconds, forgets the clients no limit needs any more and
/// writes the owed log lines of failed sign-ins.
async fn sweep_limits(state: Arc<AppState>) {
    loop {
        sleep(Duration::from_secs(5)).await;
        state.limits.sweep();
    }
}

/// `tally migrate`: apply pending migrations once, then exit. A contract
/// migration that a session of an older release holds back is refused
/// (after the others are applied) unless `force`.
pub async fn migrate(settings: &config::StoreSettings, force: bool) -> anyhow::Result<Vec<i64>> {
    run_migrations(settings, None, force).await
}

/// [`migrate`] with a list of migrations other than the binary's own: for
/// tests of the migrator, which need contract migrations that no release
/// has yet.
#[doc(hidden)]
pub async fn migrate_list(
    settings: &config::StoreSettings,
    list: &[store::Migration],
    force: bool,
) -> anyhow::Result<Vec<i64>> {
    run_migrations(settings, Some(list), force).await
}

/// Applies `list`, or the store's own list when `None`.
async fn run_migrations(
    settings: &config::StoreSettings,
    list: Option<&[store::Migration]>,
    force: bool,
) -> anyhow::Result<Vec<i64>> {
    let url = settings.database_url()?;
    // The same owner as `serve`: a migration while a server runs on this
    // SQLite file is refused rather than changing the schema under it.
    let _owner = store::claim(&url)?;
    let store = store::open(&url, settings)?;
    let list = list.unwrap_or_else(|| store::migrate::list(store.backend()));
    let contracts = if force {
        Contracts::Force
    } else {
        Contracts::WhenSafe
    };
    let migrated = store
        .migrate(list, contracts)
        .await
        .with_context(|| format!("migrating {}", redact_url(url.expose())))?;
    match migrated.held {
        None => Ok(migrated.applied),
        Some(held) => bail!(
            "{held}\n\
             Stop or upgrade those replicas, then run `tally migrate` again; `tally migrate \
             --force` applies it anyway, for sessions known not to use what it changes. \
             Applied meanwhile: {:?}",
            migrated.applied
        ),
    }
}
