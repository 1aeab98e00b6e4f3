-- Version 2: valid transactions the classifier failed on (see the
-- PostgreSQL migration of the same name).

ALTER TABLE runs ADD COLUMN rows_unclassified INTEGER NOT NULL DEFAULT 0;

CREATE TABLE classification_failures (
    transaction_id  TEXT NOT NULL REFERENCES transactions (id),
    run_id          TEXT NOT NULL,
    failure_class   TEXT NOT NULL,
    message         TEXT NOT NULL,
    source_location TEXT NOT NULL,
    source_line     INTEGER,
    failed_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (transaction_id, run_id)
);
