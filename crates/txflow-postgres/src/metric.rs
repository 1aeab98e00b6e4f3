//! The adapter's metrics, declared once with their help text.

pub const UP: &str = "txflow_database_up";
pub const OUTAGES: &str = "txflow_database_outages_total";
pub const RECONNECTS: &str = "txflow_database_reconnects_total";

/// Registers the help text of every metric above (idempotent).
pub fn describe() {
    metrics::describe_gauge!(
        UP,
        "1 while the database answers, 0 from the first failed call of an outage until it answers again"
    );
    metrics::describe_counter!(
        OUTAGES,
        "Times the database became unreachable (connection lost or refused)"
    );
    metrics::describe_counter!(
        RECONNECTS,
        "New database connections made after one was lost"
    );
}
