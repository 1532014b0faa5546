//! `gatehouse-gateway`: the binary. Everything it does is in the library's
//! [`gatehouse_gateway::cli`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    gatehouse_gateway::cli::run(gatehouse_gateway::cli::Cli::parse())
}
