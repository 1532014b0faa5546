-- Several schedulers on one database. Each running scheduler is a member
-- with a lease that it renews every few seconds; a member whose lease ran
-- out is presumed dead and its unfinished runs pass to another member.
-- `fence` is the member's fencing token, from a sequence, so never reused:
-- every run names the fence of the scheduler that owns it (`owner`), and
-- every write a scheduler makes to a run names its own fence, so one that
-- was presumed dead cannot change a run that has passed to another.
-- Times are Unix milliseconds by the database's clock, so the schedulers'
-- clocks do not have to agree.
CREATE FUNCTION gatehouse_now_ms() RETURNS BIGINT
    LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;
CREATE SEQUENCE scheduler_fence;
CREATE TABLE schedulers (
    fence BIGINT PRIMARY KEY DEFAULT nextval('scheduler_fence'),
    name TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
-- Runs recorded before this version have no owner: the first scheduler
-- to look adopts them.
ALTER TABLE runs ADD COLUMN owner BIGINT;
-- A cancel (or a replacement) asked of a run another scheduler owns:
-- `cancel:<subject>` or `replace:<run id>`; the owner acts on it.
ALTER TABLE runs ADD COLUMN stop_request TEXT;
CREATE INDEX runs_unfinished_by_owner ON runs (owner)
    WHERE status IN ('queued', 'starting', 'running');
