-- Version 7: models as versions. Each model that wrote predictions is
-- registered (name, version, kind, where it runs); one may be active. The
-- view of each transaction's prediction prefers the active model's, then
-- the latest as before.

CREATE TABLE models (
    version        text PRIMARY KEY,
    name           text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('builtin', 'http', 'file')),
    location       text,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    active         boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX models_one_active ON models (active) WHERE active;

CREATE OR REPLACE VIEW transactions_with_latest_prediction AS
SELECT t.*, p.category, p.confidence, p.model_version, p.predicted_at
FROM transactions t
LEFT JOIN LATERAL (
    SELECT category, confidence, model_version, predicted_at
    FROM predictions
    WHERE transaction_id = t.id
    ORDER BY model_version IS NOT DISTINCT FROM (SELECT version FROM models WHERE active) DESC,
             predicted_at DESC, model_version DESC
    LIMIT 1
) p ON true;
