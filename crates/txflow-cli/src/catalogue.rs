//! Every metric txflow exports, in one list: each crate's catalogue and the
//! batch run's own. At start the binary installs the Prometheus recorder
//! and registers every metric's help text; `docs/METRICS.md` is checked
//! against this list (see the tests).

use metrics_exporter_prometheus::PrometheusHandle;
use txflow_core::metric::{Kind, Metric};

/// The batch run's metrics (`txflow batch`), pushed to a Pushgateway with
/// `--pushgateway` and served with `--metrics-listen`.
pub mod batch {
    use txflow_core::metric::Metric;

    pub const ROWS: &str = "txflow_batch_rows_total";
    pub const UNCLASSIFIED: &str = "txflow_batch_unclassified_rows_total";
    pub const FILES: &str = "txflow_batch_files_total";
    pub const BYTES: &str = "txflow_batch_read_bytes_total";
    pub const DURATION: &str = "txflow_batch_run_duration_seconds";
    pub const STATUS: &str = "txflow_batch_run_status";
    pub const LAST_RUN: &str = "txflow_batch_last_run_timestamp_seconds";
    pub const LAST_SUCCESS: &str = "txflow_batch_last_success_timestamp_seconds";

    pub const ALL: &[Metric] = &[
        Metric::counter(
            ROWS,
            &["outcome"],
            "Rows of the run by outcome: written (new), present (stored by an earlier run), invalid (rejected)",
        ),
        Metric::counter(
            UNCLASSIFIED,
            &[],
            "Valid rows stored without a prediction because the classifier failed on them",
        ),
        Metric::counter(
            FILES,
            &["outcome"],
            "Input files of the run: done, or failed (a rerun completes them)",
        ),
        Metric::counter(BYTES, &[], "Bytes of input read"),
        Metric::gauge(DURATION, &[], "How long the run took, or has taken so far"),
        Metric::gauge(
            STATUS,
            &["status"],
            "1 for the run's status (running, succeeded, succeeded_with_rejects, error_rate_exceeded, failed), 0 for the others",
        ),
        Metric::gauge(
            LAST_RUN,
            &[],
            "When the last run ended, in seconds since the Unix epoch",
        ),
        Metric::gauge(
            LAST_SUCCESS,
            &[],
            "When the last successful run ended, in seconds since the Unix epoch (kept by the Pushgateway across failed runs)",
        ),
    ];
}

/// Every catalogue.
pub const CATALOGUES: &[&[Metric]] = &[
    txflow_http::server::metric::ALL,
    txflow_http::client::metric::ALL,
    #[cfg(feature = "kafka")]
    txflow_kafka::consume::metric::ALL,
    #[cfg(feature = "kafka")]
    txflow_kafka::sink::metric::ALL,
    txflow_postgres::metric::ALL,
    batch::ALL,
];

/// Every metric txflow exports.
pub fn all() -> impl Iterator<Item = &'static Metric> {
    CATALOGUES.iter().flat_map(|c| c.iter())
}

/// Installs the process's recorder (once) and registers every help text.
pub fn install() -> PrometheusHandle {
    let handle = txflow_http::server::metrics_handle();
    for m in all() {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
    handle
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The names in the first column of docs/METRICS.md's tables.
    fn documented() -> BTreeSet<String> {
        let doc = include_str!("../../../docs/METRICS.md");
        doc.lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .filter(|name| name.starts_with("txflow_"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_metrics_document_lists_exactly_the_exported_metrics() {
        let exported: BTreeSet<String> = all().map(|m| m.name.to_owned()).collect();
        let documented = documented();
        let missing: Vec<_> = exported.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&exported).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "docs/METRICS.md is out of date: not documented {missing:?}; documented but not exported {stale:?}"
        );
    }

    #[test]
    fn names_follow_prometheus_conventions_and_are_unique() {
        let mut seen = BTreeSet::new();
        for m in all() {
            assert!(seen.insert(m.name), "{} is declared twice", m.name);
            assert!(!m.help.is_empty(), "{} has no help text", m.name);
            let ok = m
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            assert!(ok && m.name.starts_with("txflow_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end with _total",
                m.name
            );
        }
    }

    /// Every series a PromQL query reads: (metric name, label names matched).
    fn selectors(query: &str) -> Vec<(String, Vec<String>)> {
        use promql_parser::parser::{Expr, parse};
        use promql_parser::util::{ExprVisitor, walk_expr};

        struct Names(Vec<(String, Vec<String>)>);
        impl ExprVisitor for Names {
            type Error = ();
            fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
                let vs = match expr {
                    Expr::VectorSelector(vs) => vs,
                    Expr::MatrixSelector(ms) => &ms.vs,
                    _ => return Ok(true),
                };
                let mut name = vs.name.clone().unwrap_or_default();
                let mut labels = Vec::new();
                for m in &vs.matchers.matchers {
                    if m.name == "__name__" {
                        name = m.value.clone();
                    } else {
                        labels.push(m.name.clone());
                    }
                }
                self.0.push((name, labels));
                Ok(true)
            }
        }
        // Grafana's variables, as Grafana would fill them in.
        let query = query
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$job", ".*");
        let expr = parse(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
        let mut names = Names(Vec::new());
        walk_expr(&mut names, &expr).expect("no visitor error");
        names.0
    }

    /// Checks one query: each metric it reads is exported, with the kind its
    /// suffix implies, and each label it matches is one the metric has.
    fn check_query(query: &str, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, labels) in selectors(query) {
            // Prometheus's own series, and the labels every target has.
            if name == "up" {
                continue;
            }
            let (base, histogram_part) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .map_or((name.as_str(), false), |base| (base, true));
            let Some(metric) = all().find(|m| m.name == base) else {
                problems.push(format!(
                    "{at}: {name} is not a metric txflow exports ({query})"
                ));
                continue;
            };
            if histogram_part != (metric.kind == Kind::Histogram) {
                problems.push(format!(
                    "{at}: {name}: {base} is a {}",
                    metric.kind.as_str()
                ));
            }
            for label in labels {
                let known = metric.labels.contains(&label.as_str())
                    || ["job", "instance", "dag", "file"].contains(&label.as_str())
                    || (label == "le" && histogram_part);
                if !known {
                    problems.push(format!("{at}: {name} has no label {label} ({query})"));
                }
            }
        }
        problems
    }

    #[test]
    fn every_dashboard_query_reads_metrics_txflow_exports() {
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(
            "../../../deploy/observability/grafana/txflow.json"
        ))
        .expect("the dashboard is JSON");
        let mut problems = Vec::new();
        let mut queries = 0;
        let panels = dashboard["panels"].as_array().expect("panels");
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a PromQL query");
                let at = format!("panel {:?}", panel["title"].as_str().unwrap_or_default());
                problems.extend(check_query(expr, &at));
                queries += 1;
            }
        }
        assert!(queries >= 30, "{queries} queries");
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn every_alert_rule_reads_metrics_txflow_exports() {
        let rules: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(include_str!("../../../deploy/observability/alerts.yml"))
                .expect("the rules are YAML");
        let mut problems = Vec::new();
        let mut alerts = 0;
        for group in rules["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                let name = rule["alert"].as_str().expect("an alert name");
                let expr = rule["expr"].as_str().expect("an expression");
                problems.extend(check_query(expr, name));
                alerts += 1;
            }
        }
        assert!(alerts >= 7, "{alerts} alerts");
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn the_query_check_finds_unknown_metrics_labels_and_kinds() {
        assert!(
            check_query("sum(rate(txflow_stream_records_consumed_total[5m]))", "ok").is_empty()
        );
        let problems = [
            "rate(txflow_no_such_total[5m])",
            "txflow_sink_store_up{colour=\"red\"}",
            "rate(txflow_consumer_lag_bucket[5m])",
        ]
        .map(|q| check_query(q, "bad"));
        assert!(problems.iter().all(|p| p.len() == 1), "{problems:#?}");
    }
}
