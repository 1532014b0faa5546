//! One function per command. Those that can fail in only one way return
//! `anyhow::Result` and are reported by [`super::report`]; `run`, `check`,
//! `explain` and `audit verify` print their own diagnostics because their
//! output format is part of their interface (miette reports with
//! file:line:col, exit codes 1 and 2 for a broken or torn audit chain).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{bootstrap as first_start, certs_dev, explain as explain_policy};
use crate::admin::{logging, metrics};
use crate::proxy::refusal::Reason;
use crate::{identity, server, snapshot};

pub fn run(log_format: logging::LogFormat, policy: PathBuf, threads: Option<usize>) -> ExitCode {
    let metrics = metrics::Metrics::new(Reason::all().into_iter().map(Reason::as_str));
    logging::init(log_format, Some(metrics.clone()));
    let result = server::run(policy, threads, metrics);
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse-gateway: {e:#}");
            ExitCode::from(1)
        }
    }
}

pub fn check(policy: &Path) -> ExitCode {
    let state = match identity::IdentityState::new() {
        Ok(state) => state,
        Err(e) => {
            eprintln!("gatehouse-gateway: cannot start password workers: {e}");
            return ExitCode::from(1);
        }
    };
    match snapshot::Snapshot::load(policy, &state, None) {
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

pub fn new_api_key(name: &str, roles: Vec<String>) -> anyhow::Result<()> {
    let (key, hash) = identity::new_api_key()?;
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
    Ok(())
}

pub fn logout_user(policy: &Path, user: &str, by: Option<String>) -> anyhow::Result<()> {
    use anyhow::Context;
    let policy = gatehouse_policy::load(policy).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(settings) = &policy.shared_state else {
        anyhow::bail!(
            "the policy has no [shared_state]: the replicas cannot hear of it \
             (on one machine, rotate [session] keys to end every session)"
        );
    };
    let Some(session) = &policy.identities.session else {
        anyhow::bail!("the policy has no [session]: there are no sessions to end");
    };
    if !user.starts_with("oidc:") || user.split(':').count() < 3 {
        anyhow::bail!("{user:?} is not a session user: expected oidc:<provider>:<subject>");
    }
    let before = identity::session::unix_now();
    let entry = crate::shared_state::Listed::UserSessions {
        subject: user.to_owned(),
        before,
        until_ms: before
            .saturating_add(session.lifetime.as_secs())
            .saturating_mul(1000),
        by: Some(
            by.or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "operator".into()),
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let heard = runtime
        .block_on(crate::shared_state::lists::publish_once(settings, &entry))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("writing to Redis ([shared_state])")?;
    println!("every session of {user} issued until now is ended; {heard} gateway replica(s) heard it now");
    if heard == 0 {
        eprintln!(
            "no replica is running: the revocation is stored in Redis and replicas load it \
             when they start, but none wrote an audit record"
        );
    }
    Ok(())
}

pub fn hash_password() -> anyhow::Result<()> {
    let hash = identity::hash_password(&read_password()?)?;
    println!("{hash}");
    Ok(())
}

/// One line from stdin, without its newline; empty is refused.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password)
}

pub fn healthcheck(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    Ok(gatehouse_healthcheck::probe(addr, path)?)
}

pub fn bootstrap(dir: &Path, user: &str) -> anyhow::Result<()> {
    let created = first_start::bootstrap(dir)?;
    for file in &created.files {
        eprintln!("created {}", file.display());
    }
    let hash_file = first_start::PASSWORD_HASH_FILE;
    match created.password {
        Some(password) => {
            println!("admin user: {user}");
            println!("admin password: {password}");
            println!(
                "(shown once: only its argon2id hash is stored, in {}/{hash_file})",
                dir.display()
            );
        }
        None => println!(
            "the admin credential already exists ({}/{hash_file}); its password was shown when it was created. To replace it, delete that file and run bootstrap again.",
            dir.display()
        ),
    }
    Ok(())
}

pub fn explain(policy: &Path, roles: &[String], method: &str, path: &str) -> ExitCode {
    match explain_policy::run(policy, roles, method, path) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:?}");
            ExitCode::from(1)
        }
    }
}

pub fn certs_dev(out: &Path, hosts: &[String], if_absent: bool) -> anyhow::Result<()> {
    if if_absent && certs_dev::server_cert_exists(out) {
        println!(
            "kept the existing certificate in {} (--if-absent)",
            out.display()
        );
        return Ok(());
    }
    let paths = certs_dev::write_dev_certs(out, hosts)?;
    let ca = paths.ca_cert.display();
    println!("wrote {} and {}", paths.cert.display(), paths.key.display());
    println!("local CA: {ca}");
    println!("to trust it on Debian:  cp {ca} /usr/local/share/ca-certificates/gatehouse-dev.crt && update-ca-certificates");
    println!("for curl:               curl --cacert {ca} https://localhost:8443/");
    println!("for Node:               NODE_EXTRA_CA_CERTS={ca}");
    Ok(())
}

/// Exits 0 when the chain is intact, 1 when it is broken (or the files
/// cannot be read), 2 when intact but a file ends in a torn record.
pub fn audit_verify(files: &[PathBuf]) -> ExitCode {
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
