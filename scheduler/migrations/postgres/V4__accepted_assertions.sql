-- The gateway's assertions that a scheduler sharing this database has
-- accepted, each until it could not be accepted anyway (Unix seconds):
-- one accepted by one scheduler is refused by the others, as a replay.
CREATE TABLE accepted_assertions (
    jti TEXT PRIMARY KEY,
    forget_after BIGINT NOT NULL
);
CREATE INDEX accepted_assertions_by_expiry ON accepted_assertions (forget_after);
