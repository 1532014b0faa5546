//! End-to-end tests of the gateway: our real binary on free ports, a real
//! upstream, real TLS clients. One test binary, grouped by topic.

// Test helpers may unwrap like tests do: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod abuse;
mod admin;
mod audit;
mod cluster;
mod edge;
mod framing;
mod identity;
mod ipv6;
mod lifecycle;
mod oidc;
mod proxy_protocol;
mod scanners;
mod shared_state;
mod tls;
