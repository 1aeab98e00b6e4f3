//! The sink member's metrics, declared once with their help text and unit.
//! Each carries the connector's kind as the label `sink`. The member also
//! exports the consumer's lag, partitions held, rejoins and pauses (see
//! `consume::metric`).

pub const READ: &str = "txflow_sink_records_read_total";
pub const WRITTEN: &str = "txflow_sink_records_written_total";
pub const BATCHES: &str = "txflow_sink_batches_total";
pub const BYTES: &str = "txflow_sink_bytes_read_total";
pub const ERRORS: &str = "txflow_sink_errors_total";
pub const WRITE_SECONDS: &str = "txflow_sink_write_seconds";
pub const UP: &str = "txflow_sink_store_up";

/// Registers the help text of every metric above.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(READ, "Predictions events read from the topic");
    metrics::describe_counter!(
        WRITTEN,
        "Events the store acknowledged (a replay counts again: writes are idempotent)"
    );
    metrics::describe_counter!(BATCHES, "Partition batches written to the store");
    metrics::describe_counter!(BYTES, Unit::Bytes, "Bytes of event values read");
    metrics::describe_counter!(
        ERRORS,
        "Failures by class: unavailable (waited out), refused and decode (dead-lettered), fatal"
    );
    metrics::describe_histogram!(
        WRITE_SECONDS,
        Unit::Seconds,
        "Time to write one partition batch, waits for the store included"
    );
    metrics::describe_gauge!(UP, "1 while the store answers, 0 while it is unavailable");
}
