-- The run history, as in SQLite (migrations/sqlite/V1), in PostgreSQL's
-- types: times are Unix milliseconds (BIGINT), flags are BOOLEAN.
CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    job TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    triggered_by TEXT,
    planned_at BIGINT,
    retry_of BIGINT,
    attempt BIGINT NOT NULL,
    status TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    exit_code BIGINT,
    oom_killed BOOLEAN NOT NULL DEFAULT FALSE,
    container_id TEXT,
    logs BYTEA,
    logs_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    reason TEXT,
    reason_code TEXT
);
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_by_status ON runs (status);
-- A job's fire time is recorded once, whoever records it.
CREATE UNIQUE INDEX runs_one_per_fire_time ON runs (job, planned_at)
    WHERE trigger_kind IN ('schedule', 'catch_up') AND attempt = 1;
CREATE TABLE job_state (
    job TEXT PRIMARY KEY,
    last_planned BIGINT NOT NULL
);
