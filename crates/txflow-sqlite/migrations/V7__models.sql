-- Version 7: models as versions (see the PostgreSQL migration of the same
-- number). One may be active; the view of each transaction's prediction
-- prefers the active model's, then the latest as before.

CREATE TABLE models (
    version        TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('builtin', 'http', 'file')),
    location       TEXT,
    registered_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    active         INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1))
);
CREATE UNIQUE INDEX models_one_active ON models (active) WHERE active = 1;

DROP VIEW category_totals;
DROP VIEW transactions_with_latest_prediction;

CREATE VIEW transactions_with_latest_prediction AS
SELECT t.*, p.category, p.confidence, p.model_version, p.predicted_at
FROM transactions t
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
