-- Version 6: what `txflow dlq replay` sent back to the stream. One row per
-- letter and replay run; the outcome is read from the data (the transaction
-- stored, or a newer dead letter naming this one in txflow-replay-of).

CREATE TABLE replays (
    letter_topic      text NOT NULL,
    letter_partition  integer NOT NULL,
    letter_offset     bigint NOT NULL,
    run_id            text NOT NULL,
    source_topic      text NOT NULL,
    transaction_key   text,
    error_class       text NOT NULL,
    error_rule        text NOT NULL,
    attempt           integer NOT NULL,
    replayed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (letter_topic, letter_partition, letter_offset, run_id)
);
