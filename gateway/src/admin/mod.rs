//! What operators see and steer: Prometheus metrics, the admin listener
//! (`/metrics`, `/healthz`, `/readyz`, `/jwks.json`), policy and
//! certificate reload, the gateway's audit records, and logs.

pub mod access_log;
pub mod audit;
pub mod endpoints;
pub mod log_sink;
pub mod logging;
pub mod metrics;
pub mod reload;
