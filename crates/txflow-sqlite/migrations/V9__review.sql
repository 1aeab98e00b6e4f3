-- Version 9: the review loop (see the PostgreSQL migration of the same
-- number): a model's default review threshold, the queue of predictions for a
-- person, and people's labels, which win over every model in the views: the
-- view of each transaction's category prefers a label, then the active
-- model's prediction, then the latest.

ALTER TABLE models ADD COLUMN review_below REAL CHECK (review_below > 0 AND review_below <= 1);

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
