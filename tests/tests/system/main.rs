//! Whole-system tests: the real gateway and scheduler binaries together,
//! with the real programs around them (docker-compose and a private
//! dockerd, a Prometheus server, headless Chromium, an OpenID provider,
//! nginx), and the attack suite against the gateway. One binary, apart
//! from each crate's own suite; the binaries are found (and built when
//! missing) by `gatehouse_tests::binaries`.

// Test helpers may unwrap like tests do: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod attack;
mod browser;
mod compose;
mod compose_cluster;
mod compose_stack;
mod prometheus;
