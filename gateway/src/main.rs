//! `gatehouse-gateway`: the binary. Everything it does is in the library's
//! [`gatehouse_gateway::cli`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, not glibc's malloc: per-thread caches without arena-lock
/// waits on the request path (measured in bench/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    gatehouse_gateway::cli::run(gatehouse_gateway::cli::Cli::parse())
}
