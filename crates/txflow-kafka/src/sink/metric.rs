//! The sink member's metrics, declared once with their labels and help
//! text. Each carries the connector's kind as the label `sink`. The member
//! also exports the consumer's lag, partitions held, rejoins and pauses
//! (see `consume::metric`).

use txflow_core::metric::Metric;

pub const READ: &str = "txflow_sink_records_read_total";
pub const WRITTEN: &str = "txflow_sink_records_written_total";
pub const BATCHES: &str = "txflow_sink_batches_total";
pub const BYTES: &str = "txflow_sink_read_bytes_total";
pub const ERRORS: &str = "txflow_sink_errors_total";
pub const WRITE_SECONDS: &str = "txflow_sink_write_seconds";
pub const UP: &str = "txflow_sink_store_up";

/// Every metric above.
pub const ALL: &[Metric] = &[
    Metric::counter(READ, &["sink"], "Predictions events read from the topic"),
    Metric::counter(
        WRITTEN,
        &["sink"],
        "Events the store acknowledged (a replay counts again: writes are idempotent)",
    ),
    Metric::counter(BATCHES, &["sink"], "Partition batches written to the store"),
    Metric::counter(BYTES, &["sink"], "Bytes of event values read"),
    Metric::counter(
        ERRORS,
        &["sink", "class"],
        "Failures by class: unavailable (waited out), refused and decode (dead-lettered), fatal",
    ),
    Metric::histogram(
        WRITE_SECONDS,
        &["sink"],
        "Time to write one partition batch, waits for the store included",
    ),
    Metric::gauge(
        UP,
        &["sink"],
        "1 while the store answers, 0 while it is unavailable",
    ),
];
