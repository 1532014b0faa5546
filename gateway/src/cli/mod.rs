//! The command line: what each `gatehouse-gateway` command does, and the
//! one place its errors are reported (with context; the modules below
//! return typed errors).

pub mod bootstrap;
pub mod certs_dev;
mod commands;
pub mod explain;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin::logging;

#[derive(Parser)]
#[command(
    name = "gatehouse-gateway",
    version,
    about = "Gatehouse security gateway"
)]
pub struct Cli {
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
    /// API key tooling.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Hash a password for a [[basic_user]] (argon2id). Reads it from stdin.
    HashPassword,
    /// First start: create an admin password (printed once; only its
    /// argon2id hash is stored), a session key and an assertion signing
    /// key in DIR, where absent.
    /// A second run changes nothing.
    Bootstrap {
        #[arg(long, default_value = "/var/lib/gatehouse/bootstrap")]
        dir: PathBuf,
        /// The [[basic_user]] name the hash is for (shown in the message).
        #[arg(long, default_value = "admin")]
        user: String,
    },
    /// Write a new Ed25519 assertion signing key (PKCS#8 PEM, 0600) for a
    /// key rotation: publish it first, then sign with it (see the README).
    /// Never overwrites a file.
    AssertionKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// End every session of one user on every gateway replica at once:
    /// sessions issued until now are refused, and each running replica
    /// writes a `sessions.revoked` audit record. Needs `[shared_state]`
    /// (the replicas hear of it through Redis) and `[session]`.
    LogoutUser {
        #[arg(long, env = "GATEHOUSE_POLICY")]
        policy: PathBuf,
        /// The user as the audit log and upstreams name them:
        /// `oidc:<provider>:<subject>`.
        user: String,
        /// Who is asking, for the audit records (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Audit log tooling.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Exit 0 when the admin listener answers 200 on PATH (a container
    /// health probe that needs no curl or shell in the image).
    Healthcheck {
        #[arg(default_value = "127.0.0.1:9090")]
        addr: std::net::SocketAddr,
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
    /// Show which rule allows or denies a request, and which roles reach
    /// which routes.
    Explain {
        #[arg(long, env = "GATEHOUSE_POLICY")]
        policy: PathBuf,
        /// Roles of the caller, comma-separated (empty: an anonymous caller).
        #[arg(long = "as", value_delimiter = ',')]
        roles: Vec<String>,
        method: String,
        path: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit files (the active one and its rotated
    /// files, in any order). Exits 0 when intact, 1 when a record was
    /// altered, removed or reordered, 2 when intact but a file ends in an
    /// incomplete record (a crash during a write).
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Print a fresh API key once, and the policy lines that store its hash.
    New {
        #[arg(long)]
        name: String,
        /// Roles for the key (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "")]
        roles: Vec<String>,
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
        /// Keep an existing server certificate and key instead of
        /// re-issuing them (for start scripts that run on every start).
        #[arg(long)]
        if_absent: bool,
    },
}

/// Runs one command; its errors are reported here, as
/// `gatehouse-gateway <command>: <error with context>`.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run { policy, threads } => commands::run(cli.log_format, policy, threads),
        Command::Check { policy } => commands::check(&policy),
        Command::ApiKey {
            command: ApiKeyCommand::New { name, roles },
        } => report("api-key new", commands::new_api_key(&name, roles)),
        Command::Audit {
            command: AuditCommand::Verify { files },
        } => commands::audit_verify(&files),
        Command::HashPassword => report("hash-password", commands::hash_password()),
        Command::LogoutUser { policy, user, by } => {
            report("logout-user", commands::logout_user(&policy, &user, by))
        }
        Command::Healthcheck { addr, path } => {
            report("healthcheck", commands::healthcheck(addr, &path))
        }
        Command::Bootstrap { dir, user } => report("bootstrap", commands::bootstrap(&dir, &user)),
        Command::AssertionKey { out } => report(
            "assertion-key",
            bootstrap::new_assertion_key(&out).map(|()| eprintln!("created {}", out.display())),
        ),
        Command::Explain {
            policy,
            roles,
            method,
            path,
        } => commands::explain(&policy, &roles, &method, &path),
        Command::Certs {
            command:
                CertsCommand::Dev {
                    out,
                    hosts,
                    if_absent,
                },
        } => report("certs dev", commands::certs_dev(&out, &hosts, if_absent)),
    }
}

/// Success, or the error on stderr with the command's name and exit 1.
fn report(command: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse-gateway {command}: {e:#}");
            ExitCode::from(1)
        }
    }
}
