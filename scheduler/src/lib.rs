//! `gatehouse-scheduler`: a small, hardened job runner behind the gateway.
//!
//! It reads its jobs and permissions from the Gatehouse policy
//! (`gatehouse-policy`), runs each job as a locked-down container through
//! the Docker API, keeps the run history in SQLite and serves an API that
//! only the gateway can call (its signed assertion is checked on every
//! request). See ARCHITECTURE.md for the map.

pub mod audit;
pub mod auth;
pub mod beneath;
pub mod docker;
pub mod engine;
pub mod http;
pub mod job_env;
pub mod logging;
pub mod mask;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod store;
pub mod ticker;

/// The cron schedules, shared with the policy crate, which validates them.
pub use gatehouse_policy::cron;
