//! A real PostgreSQL (Debian's `postgresql` package) on a free loopback
//! port, in a data directory of its own, run as the `postgres` user (it
//! refuses root), with trust authentication on loopback: a test database,
//! nothing else runs there. [`Postgres::start_tls`] accepts TLS
//! connections only, with a certificate from the test CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::{free_port, wait_for_port, ChildProcess};
use crate::TestPki;

pub struct Postgres {
    process: Option<ChildProcess>,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The database and role the tests use.
const NAME: &str = "gatehouse";

impl Postgres {
    /// A fresh cluster with the database `gatehouse`, owned by the role
    /// `gatehouse`.
    pub fn start() -> Postgres {
        Self::try_start(None)
            .expect("PostgreSQL (apt install postgresql; runs as the postgres user)")
    }

    /// Like [`Postgres::start`], refusing connections without TLS; its
    /// certificate (for 127.0.0.1 and localhost) is issued by `pki`.
    pub fn start_tls(pki: &TestPki) -> Postgres {
        Self::try_start(Some(pki))
            .expect("PostgreSQL with TLS (apt install postgresql; runs as the postgres user)")
    }

    fn try_start(tls: Option<&TestPki>) -> Result<Postgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("ghpg-")
            .tempdir_in("/tmp")
            .context("a temp dir")?;
        as_postgres(
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path()),
            false,
        )?;
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", NAME, "--auth=trust", "-E", "UTF8", "--no-sync"]);
        as_postgres(&mut initdb, true)?;
        if let Some(pki) = tls {
            tls_only(&data, pki)?;
        }
        let mut postgres = Postgres {
            process: None,
            port: free_port(),
            dir,
            bin,
        };
        postgres.spawn()?;
        let mut createdb = Command::new(postgres.bin.join("createdb"));
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &postgres.port.to_string(),
            "-U",
            NAME,
            NAME,
        ]);
        as_postgres(&mut createdb, true)?;
        Ok(postgres)
    }

    /// `postgres://gatehouse@127.0.0.1:PORT/gatehouse?sslmode=verify-full`,
    /// for [`Postgres::start_tls`].
    pub fn url_tls(&self) -> String {
        format!(
            "postgres://{NAME}@127.0.0.1:{}/{NAME}?sslmode=verify-full",
            self.port
        )
    }

    /// `postgres://gatehouse@127.0.0.1:PORT/gatehouse?sslmode=disable`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{NAME}@127.0.0.1:{}/{NAME}?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` with psql and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                NAME,
                "-d",
                NAME,
            ])
            .args(["-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn spawn(&mut self) -> Result<()> {
        let mut command = as_postgres_user(&self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
        let log = self.dir.path().join("postgres.log");
        let process = ChildProcess::spawn(command, &log)?;
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(30),
        )
        .with_context(|| format!("postgres listens; its log:\n{}", process.log_text()))?;
        self.process = Some(process);
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Immediate shutdown: SIGQUIT.
            let _ = process.signal("QUIT");
            process.wait_exit(Duration::from_secs(10));
        }
    }
}

/// The newest installed server's `bin` directory.
fn bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .context("/usr/lib/postgresql (apt install postgresql)")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    match versions.last() {
        Some(v) => Ok(root.join(v.to_string()).join("bin")),
        None => bail!("no PostgreSQL server under /usr/lib/postgresql"),
    }
}

/// TLS on, with a certificate from `pki`, and no connection over TCP
/// without it.
fn tls_only(data: &Path, pki: &TestPki) -> Result<()> {
    let issued = pki.issue("postgres", &["127.0.0.1", "localhost"], 30)?;
    for (from, to) in [(&issued.cert, "server.crt"), (&issued.key, "server.key")] {
        let target = data.join(to);
        std::fs::copy(from, &target).with_context(|| format!("{}", target.display()))?;
        as_postgres(
            Command::new("chown").arg("postgres:postgres").arg(&target),
            false,
        )?;
        as_postgres(Command::new("chmod").arg("600").arg(&target), false)?;
    }
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))?;
    std::io::Write::write_all(
        &mut conf,
        b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_min_protocol_version = 'TLSv1.2'\n",
    )?;
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
    )?;
    Ok(())
}

/// `program` as the postgres user (setpriv execs it: no process in
/// between to outlive or to forward signals).
fn as_postgres_user(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid",
            "postgres",
            "--regid",
            "postgres",
            "--init-groups",
            "--",
        ])
        .arg(program)
        // libpq looks for a client certificate under $HOME, still root's.
        .env("HOME", "/nonexistent");
    command
}

/// Runs `command` (as the postgres user when `switch`), failing with its
/// output.
fn as_postgres(command: &mut Command, switch: bool) -> Result<()> {
    let mut wrapped;
    let command = if switch {
        wrapped = as_postgres_user(Path::new(command.get_program()));
        wrapped.args(command.get_args());
        &mut wrapped
    } else {
        command
    };
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
