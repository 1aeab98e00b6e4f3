-- Version 3: what each run did with each file, so a scheduler can skip the
-- files already done (txflow list --skip-done) and say which one failed.

CREATE TABLE run_files (
    run_id          text NOT NULL,
    source_location text NOT NULL,
    status          text NOT NULL CHECK (status IN ('done', 'failed')),
    rows_read       bigint NOT NULL DEFAULT 0,
    rows_valid      bigint NOT NULL DEFAULT 0,
    rows_invalid    bigint NOT NULL DEFAULT 0,
    rows_written    bigint NOT NULL DEFAULT 0,
    error           text,
    finished_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, source_location)
);
CREATE INDEX run_files_source_location ON run_files (source_location);
