-- Version 5: SQLite catches up with the PostgreSQL migrations 6 to 9 (see
-- those files for the reasons): dead-letter replays, models as versions
-- (one may be active; a model's label set, training metrics and default
-- review threshold), and the review loop (the queue, people's labels).
-- The view of each transaction's category prefers a label, then the
-- active model's prediction, then the latest.

CREATE TABLE replays (
    letter_topic      TEXT NOT NULL,
    letter_partition  INTEGER NOT NULL,
    letter_offset     INTEGER NOT NULL,
    run_id            TEXT NOT NULL,
    source_topic      TEXT NOT NULL,
    transaction_key   TEXT,
    error_class       TEXT NOT NULL,
    error_rule        TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    replayed_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (letter_topic, letter_partition, letter_offset, run_id)
);

CREATE TABLE models (
    version        TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('builtin', 'http', 'file')),
    location       TEXT,
    registered_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    active         INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    labels         TEXT,
    metrics        TEXT,
    review_below   REAL CHECK (review_below > 0 AND review_below <= 1)
);
CREATE UNIQUE INDEX models_one_active ON models (active) WHERE active = 1;

CREATE TABLE review_label_sets (
    model_version TEXT PRIMARY KEY,
    labels        TEXT NOT NULL
);

CREATE TABLE review_queue (
    transaction_id TEXT NOT NULL,
    model_version  TEXT NOT NULL,
    category       TEXT NOT NULL,
    confidence     REAL CHECK (confidence BETWEEN 0 AND 1),
    top            TEXT NOT NULL,
    queued_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    status         TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'labeled', 'superseded')),
    run_id         TEXT NOT NULL,
    PRIMARY KEY (transaction_id, model_version)
);
-- SQLite sorts NULL first in ascending order, as the queue wants.
CREATE INDEX review_queue_pending
    ON review_queue (confidence, queued_at, transaction_id)
    WHERE status = 'pending';

CREATE TABLE labels (
    transaction_id TEXT PRIMARY KEY REFERENCES transactions (id),
    category       TEXT NOT NULL,
    labeled_by     TEXT NOT NULL,
    labeled_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    source         TEXT NOT NULL CHECK (source IN ('review', 'import'))
);
CREATE INDEX labels_labeled_at ON labels (labeled_at);

DROP VIEW category_totals;
DROP VIEW transactions_with_latest_prediction;

CREATE VIEW transactions_with_latest_prediction AS
SELECT t.*,
       coalesce(l.category, p.category) AS category,
       CASE WHEN l.category IS NULL THEN p.confidence END AS confidence,
       p.model_version, p.predicted_at,
       l.labeled_by, l.labeled_at
FROM transactions t
LEFT JOIN labels l ON l.transaction_id = t.id
LEFT JOIN predictions p
  ON p.rowid = (SELECT rowid FROM predictions
                WHERE transaction_id = t.id
                ORDER BY model_version IS (SELECT version FROM models WHERE active = 1) DESC,
                         predicted_at DESC, model_version DESC
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
