-- Version 8: a model declares its label set. A registered model file
-- records its categories (a JSON array, in the model's order) and how it
-- did when trained (a JSON object: rows, data hash, held-out metrics,
-- calibration), as its file says.

ALTER TABLE models ADD COLUMN labels text;
ALTER TABLE models ADD COLUMN metrics text;
