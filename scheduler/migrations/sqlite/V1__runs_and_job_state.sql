-- The schema as it was before migrations were versioned. IF NOT EXISTS so
-- that a database created then (with these tables already) passes through
-- unchanged and is recorded at V1.
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    triggered_by TEXT,
    planned_at INTEGER,
    retry_of INTEGER,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    exit_code INTEGER,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    container_id TEXT,
    logs BLOB,
    logs_truncated INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    reason_code TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs(job, id);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
CREATE TABLE IF NOT EXISTS job_state (
    job TEXT PRIMARY KEY,
    last_planned INTEGER NOT NULL
);
