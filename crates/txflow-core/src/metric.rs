//! How a crate declares the metrics it records: one catalogue per crate,
//! each entry with its name, kind, labels and help text.
//!
//! The crates record through the `metrics` facade; the binary reads every
//! catalogue to register the help text, and `docs/METRICS.md` is checked
//! against them. A histogram's buckets follow from its unit, which its
//! name ends with (`_seconds`, `_size`, `_bytes`), as Prometheus's naming
//! conventions ask.

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric as a crate records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The exported name (`txflow_..._total` for counters).
    pub name: &'static str,
    pub kind: Kind,
    /// The labels it carries.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

impl Metric {
    const fn new(
        kind: Kind,
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Metric {
        Metric {
            name,
            kind,
            labels,
            help,
        }
    }

    pub const fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Metric {
        Metric::new(Kind::Counter, name, labels, help)
    }

    pub const fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Metric {
        Metric::new(Kind::Gauge, name, labels, help)
    }

    pub const fn histogram(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Metric {
        Metric::new(Kind::Histogram, name, labels, help)
    }

    /// The histogram's bucket bounds, from the unit its name ends with.
    pub fn buckets(&self) -> &'static [f64] {
        buckets_for(self.name)
    }
}

/// Seconds: from half a millisecond (an in-process call) to a minute (a
/// flush that waited for a database).
pub const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Counts of records per batch or request.
pub const SIZES: &[f64] = &[
    1.0, 10.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0, 100_000.0,
];

/// Bytes: 1 KiB to 256 MiB, by powers of four.
pub const BYTES: &[f64] = &[
    1_024.0,
    4_096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
];

/// The buckets of a histogram named `name` (seconds unless it says otherwise).
pub fn buckets_for(name: &str) -> &'static [f64] {
    if name.ends_with("_size") {
        SIZES
    } else if name.ends_with("_bytes") {
        BYTES
    } else {
        SECONDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_unit_in_the_name() {
        assert_eq!(buckets_for("txflow_stream_flush_seconds"), SECONDS);
        assert_eq!(buckets_for("txflow_predict_batch_size"), SIZES);
        assert_eq!(buckets_for("txflow_sink_object_bytes"), BYTES);
        for set in [SECONDS, SIZES, BYTES] {
            assert!(set.windows(2).all(|w| w[0] < w[1]), "{set:?} must rise");
        }
    }
}
