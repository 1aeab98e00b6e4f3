//! The member's metrics, declared once with their labels and help text.

use txflow_core::metric::Metric;

pub const CONSUMED: &str = "txflow_stream_records_consumed_total";
pub const WRITTEN: &str = "txflow_stream_transactions_written_total";
pub const DEAD_LETTERS: &str = "txflow_stream_dead_letters_total";
pub const BATCH_SIZE: &str = "txflow_stream_batch_size";
pub const FLUSH_SECONDS: &str = "txflow_stream_flush_seconds";
pub const STAGE_SECONDS: &str = "txflow_stream_stage_seconds";
pub const END_TO_END_SECONDS: &str = "txflow_stream_end_to_end_seconds";
pub const LAG: &str = "txflow_consumer_lag";
pub const ASSIGNED: &str = "txflow_stream_partitions_assigned";
pub const REJOINS: &str = "txflow_stream_rejoins_total";
pub const PAUSES: &str = "txflow_stream_consumption_pauses_total";

/// Every metric above. The lag, partitions, rejoins and pauses are also
/// what a sink member exports (see `sink::metric`).
pub const ALL: &[Metric] = &[
    Metric::counter(CONSUMED, &[], "Records received from the input topic"),
    Metric::counter(
        WRITTEN,
        &[],
        "Transactions added to the database (replays already present are not counted)",
    ),
    Metric::counter(
        DEAD_LETTERS,
        &["class"],
        "Records sent to the dead-letter topic, by error class",
    ),
    Metric::histogram(BATCH_SIZE, &[], "Records per flush"),
    Metric::histogram(
        FLUSH_SECONDS,
        &[],
        "Time to store one flush (classify, publish, write)",
    ),
    Metric::histogram(
        STAGE_SECONDS,
        &["stage"],
        "Time of one partition batch in a stage of a flush (prepare, publish, write)",
    ),
    Metric::histogram(
        END_TO_END_SECONDS,
        &[],
        "From an event's Kafka timestamp to the commit of its row",
    ),
    Metric::gauge(
        LAG,
        &["topic", "partition"],
        "Records behind the partition's end, per partition this member holds",
    ),
    Metric::gauge(
        ASSIGNED,
        &[],
        "Partitions of the input topic this member holds",
    ),
    Metric::counter(
        REJOINS,
        &[],
        "Times the member left and rejoined its group because it held no partition while it should",
    ),
    Metric::counter(
        PAUSES,
        &[],
        "Times consumption paused because records waited for the pipeline (database, classifier)",
    ),
];
