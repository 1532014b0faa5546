//! End-to-end tests of the gateway: our real binary on free ports, a real
//! upstream, real TLS clients. One test binary, grouped by topic.

mod admin;
mod edge;
mod framing;
mod lifecycle;
mod scanners;
mod support;
mod tls;
