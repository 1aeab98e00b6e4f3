//! The member's metrics, declared once with their help text and unit.

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

/// Registers the help text of every metric above.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(CONSUMED, "Records received from the input topic");
    metrics::describe_counter!(
        WRITTEN,
        "Transactions added to the database (replays already present are not counted)"
    );
    metrics::describe_counter!(
        DEAD_LETTERS,
        "Records sent to the dead-letter topic, by class"
    );
    metrics::describe_histogram!(BATCH_SIZE, "Records per flush");
    metrics::describe_histogram!(
        FLUSH_SECONDS,
        Unit::Seconds,
        "Time to store one flush (classify, publish, write)"
    );
    metrics::describe_histogram!(
        STAGE_SECONDS,
        Unit::Seconds,
        "Time of one partition batch in a stage of a flush (prepare, publish, write)"
    );
    metrics::describe_histogram!(
        END_TO_END_SECONDS,
        Unit::Seconds,
        "From an event's Kafka timestamp to the commit of its row"
    );
    metrics::describe_gauge!(LAG, "Records behind the partition's end, per partition");
    metrics::describe_gauge!(ASSIGNED, "Partitions of the input topic this member holds");
    metrics::describe_counter!(
        REJOINS,
        "Times the member left and rejoined its group because it held no partition while it should"
    );
    metrics::describe_counter!(
        PAUSES,
        "Times consumption paused because records waited for the pipeline (database, classifier)"
    );
}
