-- txflow's schema, version 1: transactions with lineage, predictions,
-- rejected rows, runs, and the views the original system offered.

CREATE TABLE runs (
    run_id              text PRIMARY KEY,
    kind                text NOT NULL,
    status              text NOT NULL,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    files               bigint NOT NULL DEFAULT 0,
    files_failed        bigint NOT NULL DEFAULT 0,
    bytes               bigint NOT NULL DEFAULT 0,
    rows_read           bigint NOT NULL DEFAULT 0,
    rows_valid          bigint NOT NULL DEFAULT 0,
    rows_invalid        bigint NOT NULL DEFAULT 0,
    rows_classified     bigint NOT NULL DEFAULT 0,
    rows_written        bigint NOT NULL DEFAULT 0,
    predictions_written bigint NOT NULL DEFAULT 0,
    error               text,
    txflow_version      text NOT NULL
);

CREATE TABLE transactions (
    id              uuid PRIMARY KEY,
    source_id       text NOT NULL,
    description     text NOT NULL,
    amount          numeric(15, 2) NOT NULL,
    "timestamp"     timestamptz NOT NULL,
    merchant        text,
    operation_type  text NOT NULL,
    side            text NOT NULL CHECK (side IN ('debit', 'credit')),
    processing_type text NOT NULL CHECK (processing_type IN ('batch', 'streaming')),
    run_id          text NOT NULL,
    batch_id        uuid NOT NULL,
    source_location text NOT NULL,
    source_line     bigint,
    source_offset   bigint,
    ingested_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_run_id ON transactions (run_id);

CREATE TABLE predictions (
    transaction_id uuid NOT NULL REFERENCES transactions (id),
    model_version  text NOT NULL,
    category       text NOT NULL,
    confidence     double precision CHECK (confidence BETWEEN 0 AND 1),
    predicted_at   timestamptz NOT NULL DEFAULT now(),
    run_id         text NOT NULL,
    PRIMARY KEY (transaction_id, model_version)
);

CREATE TABLE rejected_records (
    source_location text NOT NULL,
    source_line     bigint NOT NULL,
    source_offset   bigint,
    rule            text NOT NULL,
    field           text,
    message         text NOT NULL,
    raw             text NOT NULL,
    processing_type text NOT NULL,
    run_id          text NOT NULL,
    rejected_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_location, source_line)
);
CREATE INDEX rejected_records_run_id ON rejected_records (run_id);

-- Transactions no model has classified yet.
CREATE VIEW unprocessed_transactions AS
SELECT t.*
FROM transactions t
WHERE NOT EXISTS (SELECT 1 FROM predictions p WHERE p.transaction_id = t.id);

-- Each transaction with its most recent prediction, if any.
CREATE VIEW transactions_with_latest_prediction AS
SELECT t.*, p.category, p.confidence, p.model_version, p.predicted_at
FROM transactions t
LEFT JOIN LATERAL (
    SELECT category, confidence, model_version, predicted_at
    FROM predictions
    WHERE transaction_id = t.id
    ORDER BY predicted_at DESC, model_version DESC
    LIMIT 1
) p ON true;

-- Count and sum of amounts per category, by latest prediction.
CREATE VIEW category_totals AS
SELECT category,
       count(*)                                       AS transactions,
       sum(amount)                                    AS total_amount,
       sum(amount) FILTER (WHERE side = 'debit')      AS total_debit,
       sum(amount) FILTER (WHERE side = 'credit')     AS total_credit
FROM transactions_with_latest_prediction
WHERE category IS NOT NULL
GROUP BY category;
