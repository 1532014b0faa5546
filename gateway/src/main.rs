//! `gatehouse-gateway`: the command line. Errors are reported here, with
//! context; the modules below return typed errors.

#![forbid(unsafe_code)]

mod certs_dev;
mod client_addr;
mod framing;
mod headers;
mod listeners;
mod logging;
mod metrics;
mod path;
mod proxy;
mod reload;
mod respond;
mod server;
mod snapshot;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gatehouse-gateway",
    version,
    about = "Gatehouse security gateway"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "human", global = true)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, env = "GATEHOUSE_POLICY")]
        policy: PathBuf,
        /// Worker threads for the TLS listener (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Validate a policy and everything it refers to; exit non-zero with
    /// file:line:col diagnostics when it is invalid.
    Check {
        #[arg(long, env = "GATEHOUSE_POLICY")]
        policy: PathBuf,
    },
    /// Certificate tooling.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a local development CA and a server certificate signed by it.
    Dev {
        /// Directory for ca.pem, server.pem and their keys.
        #[arg(long, default_value = "certs/dev")]
        out: PathBuf,
        /// Names and addresses the server certificate is valid for.
        #[arg(long = "host", default_values = ["localhost", "127.0.0.1", "::1"])]
        hosts: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { policy, threads } => {
            let metrics = metrics::Metrics::new();
            logging::init(cli.log_format, Some(metrics.clone()));
            match server::run(policy, threads, metrics) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("gatehouse-gateway: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { policy } => match snapshot::Snapshot::load(&policy) {
            Ok(snapshot) => {
                println!(
                    "{}: ok ({} routes, {} certificates, sha256 {})",
                    policy.display(),
                    snapshot.policy.routes.len(),
                    snapshot.policy.tls.certs.len(),
                    snapshot.policy.origin.sha256
                );
                ExitCode::SUCCESS
            }
            Err(snapshot::SnapshotError::Policy(e)) => {
                eprintln!("{:?}", e.report());
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("{}: {e}", policy.display());
                ExitCode::from(1)
            }
        },
        Command::Certs {
            command: CertsCommand::Dev { out, hosts },
        } => match certs_dev::write_dev_certs(&out, &hosts) {
            Ok(paths) => {
                println!("wrote {} and {}", paths.cert.display(), paths.key.display());
                println!("local CA: {}", paths.ca_cert.display());
                println!("to trust it on Debian:  cp {} /usr/local/share/ca-certificates/gatehouse-dev.crt && update-ca-certificates", paths.ca_cert.display());
                println!(
                    "for curl:               curl --cacert {} https://localhost:8443/",
                    paths.ca_cert.display()
                );
                println!(
                    "for Node:               NODE_EXTRA_CA_CERTS={}",
                    paths.ca_cert.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse-gateway certs dev: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
