//! `gatehouse-scheduler`: the command line. Errors are reported here, with
//! context; the modules below return typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse_scheduler::cron::{default_timezone, Schedule};
use gatehouse_scheduler::logging::{self, LogFormat};
use gatehouse_scheduler::server;

#[derive(Parser)]
#[command(
    name = "gatehouse-scheduler",
    version,
    about = "Gatehouse job scheduler"
)]
struct Cli {
    /// Log format on stderr (json: one object per line, as the gateway's).
    #[arg(long, value_enum, default_value = "human", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler.
    Run {
        #[arg(long, env = "GATEHOUSE_POLICY")]
        policy: PathBuf,
    },
    /// Validate a policy's [scheduler] and [[job]]s; exit non-zero with
    /// file:line:col diagnostics when it is invalid.
    Check {
        #[arg(long, env = "GATEHOUSE_POLICY")]
        policy: PathBuf,
    },
    /// Exit 0 when the admin listener answers 200 on PATH (a container
    /// health probe that needs no curl or shell in the image).
    Healthcheck {
        #[arg(default_value = "127.0.0.1:9101")]
        addr: std::net::SocketAddr,
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
    /// Print the next fire times of a cron expression, one per line in
    /// RFC 3339 with the zone's offset.
    Next {
        expression: String,
        #[arg(long, default_value = default_timezone())]
        timezone: String,
        /// Start after this instant (RFC 3339); default: now.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Run { policy } => run(policy),
        Command::Check { policy } => server::load_policy(&policy).and_then(|p| {
            server::check(&p)?;
            println!(
                "{}: ok ({} job{})",
                policy.display(),
                p.jobs.len(),
                if p.jobs.len() == 1 { "" } else { "s" }
            );
            for job in &p.jobs {
                let weakened = gatehouse_policy::weakening::weakenings(job);
                if weakened.is_empty() {
                    println!("  job {}: every hardened default", job.name);
                } else {
                    println!("  job {} weakens: {}", job.name, weakened.join("; "));
                }
            }
            Ok(())
        }),
        Command::Healthcheck { addr, path } => {
            gatehouse_healthcheck::probe(addr, &path).map_err(anyhow::Error::from)
        }
        Command::Next {
            expression,
            timezone,
            after,
            count,
        } => next(&expression, &timezone, after.as_deref(), count),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // In JSON, the failure is a log line too, so every line on stderr
        // parses.
        Err(e) if cli.log_format == LogFormat::Json => {
            tracing::error!(error = format!("{e:#}"), "gatehouse-scheduler failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(policy: PathBuf) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(server::run(policy))
}

fn next(expression: &str, timezone: &str, after: Option<&str>, count: usize) -> anyhow::Result<()> {
    let schedule = Schedule::parse(expression, timezone)?;
    let after = match after {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| anyhow::anyhow!("--after {text}: {e}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let times = schedule.upcoming(after, count.min(10_000));
    anyhow::ensure!(
        !times.is_empty() || count == 0,
        "the expression never fires"
    );
    for t in times {
        println!("{}", t.to_rfc3339());
    }
    Ok(())
}
