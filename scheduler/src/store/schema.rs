//! The database's schema, as numbered migrations (`migrations/sqlite`,
//! run by refinery): each runs once, in order, in a transaction, and is
//! recorded in `refinery_schema_history`, so every release knows exactly
//! what it is opening and how to bring it up to date.
//!
//! A database created before migrations were versioned (its tables made by
//! `CREATE TABLE IF NOT EXISTS` on every open) is first given the columns
//! added before then; V1's `IF NOT EXISTS` statements then change nothing,
//! and it is recorded at V1 like any other. Its instance label of the time
//! (a hash of its path) is kept beside the new random one, so that the
//! containers of its runs still in flight are adopted after the upgrade.
//!
//! A database written by a newer release (a migration this binary does not
//! know) is refused rather than used.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("schema migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error(
        "the database is at schema version {found}, newer than this release's {known}: \
         it was written by a newer gatehouse-scheduler"
    )]
    Newer { found: i64, known: i64 },
}

/// Who owns the containers this database records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The label on the job containers this database's runs create.
    pub instance: String,
    /// The label a database from before versioned migrations used (a hash
    /// of its path), for adopting its runs in flight at the upgrade.
    pub legacy_instance: Option<String>,
}

/// Columns added before migrations were versioned, which a database from
/// then may lack; rows written before have NULL there.
const PRE_V1_COLUMNS: [(&str, &str); 1] = [("reason_code", "TEXT")];

/// Brings the database up to this release's schema and reads who owns it.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<Deployment, SchemaError> {
    let from_before_migrations =
        has_table(conn, "runs")? && !has_table(conn, "refinery_schema_history")?;
    if from_before_migrations {
        add_pre_v1_columns(conn)?;
    }
    let runner = embedded::migrations::runner();
    let known = known_version(&runner);
    if has_table(conn, "refinery_schema_history")? {
        let found: Option<i64> = conn
            .query_row(
                "SELECT MAX(version) FROM refinery_schema_history",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        if let Some(found) = found.filter(|found| *found > known) {
            return Err(SchemaError::Newer { found, known });
        }
    }
    runner.run(conn)?;
    if from_before_migrations {
        conn.execute(
            "UPDATE deployment SET legacy_instance = ?1 WHERE id = 1",
            [legacy_instance_id(path)],
        )?;
    }
    Ok(conn.query_row(
        "SELECT instance, legacy_instance FROM deployment WHERE id = 1",
        [],
        |r| {
            Ok(Deployment {
                instance: r.get(0)?,
                legacy_instance: r.get(1)?,
            })
        },
    )?)
}

/// The newest migration this release knows.
pub(super) fn known_version(runner: &refinery::Runner) -> i64 {
    runner
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// `ALTER TABLE … ADD COLUMN` for each of [`PRE_V1_COLUMNS`] the database
/// lacks.
fn add_pre_v1_columns(conn: &Connection) -> rusqlite::Result<()> {
    let existing: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('runs')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, kind) in PRE_V1_COLUMNS {
        if !existing.iter().any(|e| e == name) {
            conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {name} {kind}"))?;
        }
    }
    Ok(())
}

/// The instance label releases before versioned migrations derived from
/// the database's path.
pub(super) fn legacy_instance_id(database: &Path) -> String {
    use sha2::{Digest, Sha256};
    let path = std::fs::canonicalize(database).unwrap_or_else(|_| database.to_path_buf());
    hex::encode(&Sha256::digest(path.as_os_str().as_encoded_bytes())[..6])
}

#[cfg(test)]
mod tests;
