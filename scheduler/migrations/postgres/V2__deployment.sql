-- Which deployment this database belongs to: `instance` labels the job
-- containers it records, random and made once with the database (see
-- migrations/sqlite/V2). A PostgreSQL database never had the old
-- path-derived label, so `legacy_instance` stays empty.
CREATE TABLE deployment (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    instance TEXT NOT NULL,
    legacy_instance TEXT
);
INSERT INTO deployment (id, instance)
    VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 16));
