//! `gatehouse-gateway` as a library: the modules behind the binary, so
//! benchmarks and tools can call the same code the gateway runs.

#![forbid(unsafe_code)]

pub mod assertion;
pub mod audit;
pub mod authz;
pub mod bootstrap;
pub mod certs_dev;
pub mod client_addr;
pub mod connection;
pub mod cors;
pub mod explain;
pub mod framing;
pub mod headers;
pub mod host;
pub mod identity;
pub mod listeners;
pub mod logging;
pub mod login;
pub mod method;
pub mod metrics;
pub mod outcome;
pub mod path;
pub mod proxy;
pub mod rate_limit;
pub mod refusal;
pub mod reload;
pub mod request_id;
pub mod respond;
pub mod server;
pub mod snapshot;
pub mod tls;
