-- Version 8: a model declares its label set (a JSON array, in the model's
-- order) and how it did when trained (a JSON object), as its file says.

ALTER TABLE models ADD COLUMN labels TEXT;
ALTER TABLE models ADD COLUMN metrics TEXT;
