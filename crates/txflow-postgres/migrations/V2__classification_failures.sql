-- Version 2: valid transactions the classifier failed on. They are stored in
-- transactions without a prediction (see unprocessed_transactions); this
-- table says why, per run, so a rerun that classifies them keeps the history.

ALTER TABLE runs ADD COLUMN rows_unclassified bigint NOT NULL DEFAULT 0;

CREATE TABLE classification_failures (
    transaction_id  uuid NOT NULL REFERENCES transactions (id),
    run_id          text NOT NULL,
    failure_class   text NOT NULL,
    message         text NOT NULL,
    source_location text NOT NULL,
    source_line     bigint,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transaction_id, run_id)
);
