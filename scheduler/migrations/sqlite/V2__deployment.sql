-- Which deployment this database belongs to. `instance` labels the job
-- containers it records; it is random, made once with the database, so two
-- stacks on one Docker daemon never take each other's containers for their
-- own (it used to be a hash of the database's path, the same in every
-- stack's container). `legacy_instance` is that old hash, kept for a
-- database upgraded from before, so its runs still in flight are adopted.
CREATE TABLE deployment (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    instance TEXT NOT NULL,
    legacy_instance TEXT
);
INSERT INTO deployment (id, instance) VALUES (1, lower(hex(randomblob(8))));
