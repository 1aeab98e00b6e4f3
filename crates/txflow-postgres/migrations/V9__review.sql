-- Version 9: the review loop. Predictions under a run's review threshold
-- are queued for a person (written in the batch's own transaction); a
-- person's label is a fact that wins over every model in the views.
--
-- A transaction has at most one item that is not `superseded`: one queued
-- again by another model supersedes the older; a label closes the pending
-- one (`labeled`), and taking the label back reopens it.
--
-- `top` is the model's best categories, one `confidence<TAB>category` line
-- each, best first; `review_label_sets.labels` a model's categories, one per
-- line, in its order (a category holds no control character).

-- A model's default threshold (`models register --review-below`).
ALTER TABLE models ADD COLUMN review_below double precision
    CHECK (review_below > 0 AND review_below <= 1);

CREATE TABLE review_label_sets (
    model_version text PRIMARY KEY,
    labels        text NOT NULL
);

CREATE TABLE review_queue (
    transaction_id uuid NOT NULL,
    model_version  text NOT NULL,
    category       text NOT NULL,
    confidence     double precision CHECK (confidence BETWEEN 0 AND 1),
    top            text NOT NULL,
    queued_at      timestamptz NOT NULL DEFAULT now(),
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'labeled', 'superseded')),
    run_id         text NOT NULL,
    PRIMARY KEY (transaction_id, model_version)
);
-- The page's first screen: pending items, least confident first.
CREATE INDEX review_queue_pending
    ON review_queue (confidence NULLS FIRST, queued_at, transaction_id)
    WHERE status = 'pending';

CREATE TABLE labels (
    transaction_id uuid PRIMARY KEY REFERENCES transactions (id),
    category       text NOT NULL,
    labeled_by     text NOT NULL,
    labeled_at     timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL CHECK (source IN ('review', 'import'))
);
CREATE INDEX labels_labeled_at ON labels (labeled_at);

-- A label wins: its category, no confidence (a fact, not a guess), and who
-- gave it; else the active model's prediction, then the latest, as before.
CREATE OR REPLACE VIEW transactions_with_latest_prediction AS
SELECT t.*,
       coalesce(l.category, p.category) AS category,
       CASE WHEN l.category IS NULL THEN p.confidence END AS confidence,
       p.model_version, p.predicted_at,
       l.labeled_by, l.labeled_at
FROM transactions t
LEFT JOIN labels l ON l.transaction_id = t.id
LEFT JOIN LATERAL (
    SELECT category, confidence, model_version, predicted_at
    FROM predictions
    WHERE transaction_id = t.id
    ORDER BY model_version IS NOT DISTINCT FROM (SELECT version FROM models WHERE active) DESC,
             predicted_at DESC, model_version DESC
    LIMIT 1
) p ON true;
