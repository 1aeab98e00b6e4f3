-- Version 4: where each stream consumer group stands, per partition. Written
-- in the same transaction as the rows it covers, so a restart resumes exactly
-- after the last stored record (exactly once into the database).

CREATE TABLE stream_offsets (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
