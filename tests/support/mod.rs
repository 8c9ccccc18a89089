//! Shared helpers for integration tests: the app in-process or as a
//! process, headless Chromium, NGINX, a fault-injecting TCP proxy, load,
//! and (from tally-dev) throwaway PostgreSQL and Redis servers and the
//! process plumbing under them.
// Each test binary uses only part of this module.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod chromium;
pub mod docker;
pub mod load;
pub mod nginx;
pub mod proxy;
pub mod stack;
pub mod stores;
pub mod web;

pub use tally_dev::{OwnedDir, free_port, log_tail, pg, redis, spawner, temp_base, wait_for};
