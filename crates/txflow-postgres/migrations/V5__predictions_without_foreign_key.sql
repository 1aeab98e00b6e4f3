-- Version 5: predictions no longer carry a foreign key to transactions.
--
-- Its check ran as a trigger for every prediction row (a lookup and a row
-- lock on the transaction): 28 % of PostgreSQL's CPU in a stream drain
-- (docs/PERFORMANCE.md, 2026-11-25 session 5). txflow is the only writer and
-- keeps the invariant itself: a prediction is written in the same database
-- transaction as its transaction row, after it (sink.rs), and nothing deletes
-- transactions. The integration tests check that no prediction is orphaned.
-- classification_failures keeps its key: it is written rarely.

ALTER TABLE predictions DROP CONSTRAINT IF EXISTS predictions_transaction_id_fkey;
