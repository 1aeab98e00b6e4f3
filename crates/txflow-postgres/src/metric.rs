//! The adapter's metrics, declared once with their labels and help text.

use txflow_core::metric::Metric;

pub const UP: &str = "txflow_database_up";
pub const OUTAGES: &str = "txflow_database_outages_total";
pub const RECONNECTS: &str = "txflow_database_reconnects_total";
pub const CONNECTIONS: &str = "txflow_database_connections";
pub const OPERATION_SECONDS: &str = "txflow_database_operation_seconds";

/// Every metric above.
pub const ALL: &[Metric] = &[
    Metric::gauge(
        UP,
        &[],
        "1 while the database answers, 0 from the first failed call of an outage until it answers again",
    ),
    Metric::counter(
        OUTAGES,
        &[],
        "Times the database became unreachable (connection lost or refused)",
    ),
    Metric::counter(
        RECONNECTS,
        &[],
        "New database connections made after one was lost",
    ),
    Metric::gauge(
        CONNECTIONS,
        &[],
        "Database connections open (one per writer lane, one for the run's bookkeeping)",
    ),
    Metric::histogram(
        OPERATION_SECONDS,
        &["operation"],
        "Time of one database operation that succeeded (a batch write is one transaction), by operation",
    ),
];
