//! `gatehouse-gateway`: the command line. Errors are reported here, with
//! context; the modules below return typed errors.

#![forbid(unsafe_code)]

use gatehouse_gateway::{
    bootstrap, certs_dev, explain, identity, logging, metrics, server, snapshot,
};

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
        Command::Check { policy } => {
            let state = match identity::IdentityState::new() {
                Ok(state) => state,
                Err(e) => {
                    eprintln!("gatehouse-gateway: cannot start password workers: {e}");
                    return ExitCode::from(1);
                }
            };
            match snapshot::Snapshot::load(&policy, &state, None) {
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
            }
        }
        Command::ApiKey {
            command: ApiKeyCommand::New { name, roles },
        } => match identity::new_api_key() {
            Ok((key, hash)) => {
                let roles: Vec<String> = roles
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .map(|r| format!("{r:?}"))
                    .collect();
                eprintln!("API key for {name} (shown once; store it now):");
                println!("{key}");
                eprintln!("\nAdd to the policy:\n");
                eprintln!(
                    "[[api_key]]\nname = {name:?}\nsha256 = \"{hash}\"\nroles = [{}]",
                    roles.join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse-gateway api-key new: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Audit {
            command: AuditCommand::Verify { files },
        } => audit_verify(&files),
        Command::HashPassword => match read_password().and_then(|p| identity::hash_password(&p)) {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse-gateway hash-password: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Healthcheck { addr, path } => match gatehouse_healthcheck::probe(addr, &path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gatehouse-gateway healthcheck: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Bootstrap { dir, user } => bootstrap_command(&dir, &user),
        Command::Explain {
            policy,
            roles,
            method,
            path,
        } => match explain::run(&policy, &roles, &method, &path) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e:?}");
                ExitCode::from(1)
            }
        },
        Command::Certs {
            command: CertsCommand::Dev { out, if_absent, .. },
        } if if_absent && certs_dev::server_cert_exists(&out) => {
            println!(
                "kept the existing certificate in {} (--if-absent)",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Command::Certs {
            command: CertsCommand::Dev { out, hosts, .. },
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

fn bootstrap_command(dir: &std::path::Path, user: &str) -> ExitCode {
    let created = match bootstrap::bootstrap(dir) {
        Ok(created) => created,
        Err(e) => {
            eprintln!("gatehouse-gateway bootstrap: {e:#}");
            return ExitCode::from(1);
        }
    };
    for file in &created.files {
        eprintln!("created {}", file.display());
    }
    match created.password {
        Some(password) => {
            println!("admin user: {user}");
            println!("admin password: {password}");
            println!("(shown once: only its argon2id hash is stored, in {}/{})", dir.display(), bootstrap::PASSWORD_HASH_FILE);
        }
        None => println!(
            "the admin credential already exists ({}/{}); its password was shown when it was created. To replace it, delete that file and run bootstrap again.",
            dir.display(),
            bootstrap::PASSWORD_HASH_FILE
        ),
    }
    ExitCode::SUCCESS
}

fn audit_verify(files: &[PathBuf]) -> ExitCode {
    let report = match gatehouse_audit::verify(files) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("gatehouse-gateway audit verify: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(problem) = &report.problem {
        println!("BROKEN {problem}");
        println!(
            "{} records verified before the break, in {} files",
            report.records, report.files
        );
        return ExitCode::from(1);
    }
    for torn in &report.torn {
        println!(
            "INCOMPLETE {}:{}: the last record is cut short (a crash during a write, or truncation); the records before it verify",
            torn.file.display(),
            torn.line
        );
    }
    println!(
        "ok: {} records in {} files, seq {} to {}",
        report.records,
        report.files,
        report.first_seq.unwrap_or(0),
        report.last_seq.unwrap_or(0)
    );
    if let Some(first) = report.first_seq.filter(|&seq| seq > 1) {
        println!(
            "the chain starts at seq {first}: the records before it were deleted by retention (max_age, max_total_size) or their files were not given"
        );
    }
    if report.torn.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// One line from stdin, without its newline; empty is refused.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password)
}
