-- Version 3: what each run did with each file, so a scheduler can skip the
-- files already done (txflow list --skip-done) and say which one failed.

CREATE TABLE run_files (
    run_id          TEXT NOT NULL,
    source_location TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    rows_read       INTEGER NOT NULL DEFAULT 0,
    rows_valid      INTEGER NOT NULL DEFAULT 0,
    rows_invalid    INTEGER NOT NULL DEFAULT 0,
    rows_written    INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    finished_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (run_id, source_location)
);
CREATE INDEX run_files_source_location ON run_files (source_location);
