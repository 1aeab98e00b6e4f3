-- Version 4: where each stream consumer group stands, per partition. Written
-- in the same transaction as the rows it covers, so a restart resumes exactly
-- after the last stored record (exactly once into the database).

CREATE TABLE stream_offsets (
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    next_offset    INTEGER NOT NULL,
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (consumer_group, topic, partition)
);
