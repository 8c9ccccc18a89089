//! One test, both stores: a check written once and run on SQLite and on
//! PostgreSQL, each with a database of its own that goes with the test.
//!
//! `on_both_stores!(check, …)` makes, for each `check(&TestApp)`, a module
//! `check` with the tests `sqlite` and `postgres`; `with_both_databases!(
//! check, …)` does the same for a `check(database_url)` that starts its
//! own apps.

use tempfile::TempDir;

use super::app::{TestApp, sqlite_url};
use super::pg::PgServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// A new database: a SQLite file in a temporary directory, or a database
/// on a PostgreSQL server started for it. Both go when it is dropped.
pub struct Database {
    pub url: String,
    _dir: Option<TempDir>,
    _pg: Option<PgServer>,
}

impl Database {
    pub fn new(store: Store) -> Database {
        match store {
            Store::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Database {
                    url: sqlite_url(dir.path()),
                    _dir: Some(dir),
                    _pg: None,
                }
            }
            Store::Postgres => {
                let pg = PgServer::start();
                Database {
                    url: pg.create_database(),
                    _dir: None,
                    _pg: Some(pg),
                }
            }
        }
    }
}

/// Runs `check` on a new app over a new database of `store`.
pub async fn on_store(store: Store, check: impl AsyncFnOnce(&TestApp)) {
    let db = Database::new(store);
    let app = TestApp::spawn(&db.url, &[]).await;
    check(&app).await;
    app.stop().await.unwrap();
}

/// Runs `check` with the URL of a new database of `store`.
pub async fn with_database(store: Store, check: impl AsyncFnOnce(&str)) {
    let db = Database::new(store);
    check(&db.url).await;
}

/// For each `check(&TestApp)`: the module `check` with a test on each
/// store, `check::sqlite` and `check::postgres`.
#[macro_export]
macro_rules! on_both_stores {
    ($($check:ident),+ $(,)?) => {$(
        mod $check {
            use super::support::stores::{Store, on_store};

            #[tokio::test]
            async fn sqlite() {
                on_store(Store::Sqlite, super::$check).await;
            }

            #[tokio::test]
            async fn postgres() {
                on_store(Store::Postgres, super::$check).await;
            }
        }
    )+};
}

/// For each `check(database_url)`: the module `check` with a test on each
/// store (on a multi-threaded runtime, for checks that load their apps).
#[macro_export]
macro_rules! with_both_databases {
    ($($check:ident),+ $(,)?) => {$(
        mod $check {
            use super::support::stores::{Store, with_database};

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                with_database(Store::Sqlite, super::$check).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                with_database(Store::Postgres, super::$check).await;
            }
        }
    )+};
}
