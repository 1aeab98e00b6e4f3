-- Version 6: what `txflow dlq replay` sent back to the stream (see the
-- PostgreSQL migration of the same number).

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
