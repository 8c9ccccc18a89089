//! tally: a self-hosted hit counter with exact, durable counts.
//!
//! A hit is acknowledged only once it is committed to the durable store
//! (SQLite alone, PostgreSQL in the stack); concurrent hits share one
//! commit. The modules, from the outside in:
//!
//! - [`config`]: settings from flags and `TALLY_*` variables; secrets;
//! - [`server`]: builds the application and serves it on a listener until a
//!   shutdown future resolves, then drains;
//! - [`listener`]: accepts and serves connections with a deadline for each
//!   phase and a cap on how many are open;
//! - [`http`]: the HTTP surface (seed routes, JSON API, operations) and its
//!   one error type;
//! - [`counting`]: the domain — sites, hits, counts — and the group-commit
//!   writer; no HTTP and no SQL;
//! - [`cache`]: the cache in front of the store (Redis or in-process):
//!   count reads, rate limits, unique visitors; never needed for
//!   correctness;
//! - [`store`]: the `Store` trait with its PostgreSQL and SQLite backends and
//!   their migrations;
//! - [`metrics`]: the counters and histograms behind `/metrics`;
//! - [`telemetry`]: logging setup;
//! - [`healthcheck`]: the `tally healthcheck` probe.

pub mod cache;
pub mod config;
pub mod counting;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod limiter;
pub mod listener;
pub mod metrics;
pub mod server;
pub mod store;
pub mod sync;
pub mod telemetry;

pub use server::Application;
