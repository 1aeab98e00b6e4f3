-- txflow's schema, version 1, in SQLite: the tables and views of the
-- PostgreSQL schema. UUIDs and timestamps are text (RFC 3339, UTC); amounts
-- are numbers (SQLite has no exact decimal type).

CREATE TABLE runs (
    run_id              TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    status              TEXT NOT NULL,
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    files               INTEGER NOT NULL DEFAULT 0,
    files_failed        INTEGER NOT NULL DEFAULT 0,
    bytes               INTEGER NOT NULL DEFAULT 0,
    rows_read           INTEGER NOT NULL DEFAULT 0,
    rows_valid          INTEGER NOT NULL DEFAULT 0,
    rows_invalid        INTEGER NOT NULL DEFAULT 0,
    rows_classified     INTEGER NOT NULL DEFAULT 0,
    rows_written        INTEGER NOT NULL DEFAULT 0,
    predictions_written INTEGER NOT NULL DEFAULT 0,
    error               TEXT,
    txflow_version      TEXT NOT NULL
);

CREATE TABLE transactions (
    id              TEXT PRIMARY KEY,
    source_id       TEXT NOT NULL,
    description     TEXT NOT NULL,
    amount          NUMERIC NOT NULL,
    "timestamp"     TEXT NOT NULL,
    merchant        TEXT,
    operation_type  TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('debit', 'credit')),
    processing_type TEXT NOT NULL CHECK (processing_type IN ('batch', 'streaming')),
    run_id          TEXT NOT NULL,
    batch_id        TEXT NOT NULL,
    source_location TEXT NOT NULL,
    source_line     INTEGER,
    source_offset   INTEGER,
    ingested_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX transactions_run_id ON transactions (run_id);

CREATE TABLE predictions (
    transaction_id TEXT NOT NULL REFERENCES transactions (id),
    model_version  TEXT NOT NULL,
    category       TEXT NOT NULL,
    confidence     REAL CHECK (confidence BETWEEN 0 AND 1),
    predicted_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    run_id         TEXT NOT NULL,
    PRIMARY KEY (transaction_id, model_version)
);

CREATE TABLE rejected_records (
    source_location TEXT NOT NULL,
    source_line     INTEGER NOT NULL,
    source_offset   INTEGER,
    rule            TEXT NOT NULL,
    field           TEXT,
    message         TEXT NOT NULL,
    raw             TEXT NOT NULL,
    processing_type TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    rejected_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (source_location, source_line)
);
CREATE INDEX rejected_records_run_id ON rejected_records (run_id);

CREATE VIEW unprocessed_transactions AS
SELECT t.*
FROM transactions t
WHERE NOT EXISTS (SELECT 1 FROM predictions p WHERE p.transaction_id = t.id);

CREATE VIEW transactions_with_latest_prediction AS
SELECT t.*, p.category, p.confidence, p.model_version, p.predicted_at
FROM transactions t
LEFT JOIN predictions p
  ON p.rowid = (SELECT rowid FROM predictions
                WHERE transaction_id = t.id
                ORDER BY predicted_at DESC, model_version DESC
                LIMIT 1);

CREATE VIEW category_totals AS
SELECT category,
       count(*)                                             AS transactions,
       round(sum(amount), 2)                                AS total_amount,
       round(sum(CASE WHEN side = 'debit' THEN amount END), 2)  AS total_debit,
       round(sum(CASE WHEN side = 'credit' THEN amount END), 2) AS total_credit
FROM transactions_with_latest_prediction
WHERE category IS NOT NULL
GROUP BY category;
