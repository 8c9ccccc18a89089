//! tally: a self-hosted hit counter with exact, durable counts.
//!
//! A hit is acknowledged only once it is committed to the durable store
//! (SQLite alone, PostgreSQL in the stack); concurrent hits share one
//! commit. The modules, from the outside in; each names only those below
//! it (`tests/layers.rs` checks that there is no cycle):
//!
//! - [`server`]: builds the application from the settings (it alone opens
//!   the store and the cache) and serves it until a shutdown future
//!   resolves, then drains;
//! - [`listener`]: accepts and serves connections with a deadline for each
//!   phase and a cap on how many are open;
//! - [`http`]: the HTTP surface (seed routes, JSON API, badges, dashboard,
//!   operations), its one error type and its error codes; it reaches the
//!   store and the cache only through [`counting::Services`];
//! - [`counting`]: the services over the domain, one per concept (hits,
//!   sites, pages, series, transfer, sessions, health), the group-commit
//!   writer and retention; no HTTP and no SQL;
//! - [`store`]: the `Store` trait with its PostgreSQL and SQLite backends
//!   and their migrations;
//! - [`cache`]: the cache in front of the store (Redis or in-process):
//!   count reads, the hit limit shared across replicas, unique visitors;
//!   never needed for correctness;
//! - [`limit`]: every per-client limit (hits, reads, failed sign-ins),
//!   behind one handle;
//! - [`audience`]: the browser, system and device a user agent names and
//!   the country of an address, for breakdowns;
//! - [`bots`]: which user agents are crawlers, whose hits are not counted;
//! - [`config`]: settings from flags and `TALLY_*` variables, and their
//!   reference (`tally config --markdown`);
//! - [`secret`]: secrets, and connection strings with their passwords
//!   hidden for logs; [`net`]: IP networks (trusted proxies);
//! - [`metrics`]: the Prometheus registry behind `/metrics`;
//! - [`domain`]: sites, slugs, counts, visitors and time: the types every
//!   module above speaks, depending on none of them;
//! - [`tls`]: rustls client configurations (trust roots, client
//!   certificates, what is verified) and handshake failures in words;
//! - [`sync`]: locks that outlive a panic;
//! - [`telemetry`]: logging setup; [`healthcheck`]: the `tally healthcheck`
//!   probe.

pub mod audience;
pub mod bots;
pub mod cache;
pub mod config;
pub mod counting;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod limit;
pub mod listener;
pub mod metrics;
pub mod net;
pub mod secret;
pub mod server;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tls;

pub use server::Application;
