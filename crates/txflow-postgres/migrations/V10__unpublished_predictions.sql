-- Version 10: for a member that publishes in Kafka transactions
-- (`txflow consume --transactions`), the first offset of the partition's
-- last stored batch whose predictions' Kafka transaction was not yet seen
-- committed. Written with the rows and next_offset; a member starting on
-- the partition resumes there instead (the predictions published again),
-- so a crash after the database commit and before the Kafka commit loses
-- no prediction. NULL once the member saw the commit (it clears it right
-- after each Kafka commit) and for members without transactions.

ALTER TABLE stream_offsets ADD COLUMN unpublished_from bigint;
