//! `gatehouse-gateway` as a library: the modules behind the binary, so
//! benchmarks, fuzzers and tools call the same code the gateway runs.
//!
//! The folders follow a request from the outside in (ARCHITECTURE.md):
//! - [`edge`]: the request as bytes, before anyone asks who is calling:
//!   TLS and certificates, client address, framing, method, host, path,
//!   request ids, security headers;
//! - [`identity`]: who is calling (API keys, JWTs, basic auth, OIDC
//!   sessions and the login pages) and the assertion sent upstream;
//! - [`access`]: what the caller may do: authorization, CORS, rate limits;
//! - [`snapshot`]: everything built from one policy, swapped on reload;
//! - [`admin`]: what operators see: metrics, the admin listener, reload,
//!   the audit log and logs;
//! - [`proxy`]: the request path itself, the ordered stages in
//!   `proxy/stages.rs`, and what the upstream receives;
//! - [`server`]: the process, assembled from those parts, with its
//!   listeners and per-connection limits;
//! - [`cli`]: the command line and its offline tools.
//!
//! Each folder uses only those listed before it (`cli` uses all).

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod cli;
pub mod edge;
pub mod identity;
pub mod proxy;
pub mod server;
pub mod shared_state;
pub mod snapshot;
