//! What txflow tells Prometheus: `/metrics` that pass `promtool check
//! metrics`, and batch runs pushed to the real Pushgateway the harness
//! started.

use crate::harness::{Database, harness_var, reference_file, scrape_checked, txflow, unique};
use crate::serve::Serve;

/// The value of the first sample of `name` whose labels include every one
/// of `labels` (`key="value"`), in Prometheus text format.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, value)| value.parse().expect("a number"))
}

#[tokio::test]
async fn a_batch_run_pushes_its_metrics_and_a_failed_run_keeps_the_last_success_time() {
    let gateway = harness_var("TXFLOW_TEST_PUSHGATEWAY_URL");
    let serve = Serve::start().await;
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = reference_file();
    let file = file.to_str().expect("a UTF-8 path");
    // One group per test: the file label a mapped Airflow task would set.
    let group = unique("obs");
    let file_label = format!("file=in/{group}.csv");
    let push = |input: &str, extra: &[&str]| {
        let mut args = vec![
            "batch",
            input,
            "--database-url",
            &db.url,
            "--classifier",
            &serve.url,
            "--pushgateway",
            &gateway,
            "--pushgateway-label",
            "dag=txflow_batch",
            "--pushgateway-label",
            &file_label,
        ];
        args.extend_from_slice(extra);
        txflow(dir.path(), &args)
    };

    push(file, &[]).assert_code(0);
    let ours = format!("file=\"in/{group}.csv\"");
    let labels = [
        ours.as_str(),
        "job=\"txflow_batch\"",
        "dag=\"txflow_batch\"",
    ];
    let pushed = scrape_checked(&format!("{gateway}/metrics")).await;
    let value = |name: &str, more: &[&str]| {
        let all: Vec<&str> = labels.iter().chain(more).copied().collect();
        sample(&pushed, name, &all)
    };
    assert_eq!(
        value("txflow_batch_rows_total", &["outcome=\"written\""]),
        Some(10_000.0),
        "{pushed}"
    );
    assert_eq!(
        value("txflow_batch_files_total", &["outcome=\"done\""]),
        Some(1.0)
    );
    assert_eq!(
        value("txflow_batch_run_status", &["status=\"succeeded\""]),
        Some(1.0)
    );
    // The classifier client's metrics travel with the run's.
    assert!(
        value(
            "txflow_classifier_requests_total",
            &["outcome=\"answered\""]
        )
        .is_some_and(|n| n > 0.0),
        "{pushed}"
    );
    let success = value("txflow_batch_last_success_timestamp_seconds", &[])
        .expect("a successful run pushes its time");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - success).abs() < 120.0, "{success} vs {now}");

    // A run over its error budget: status and counts replaced, the last
    // success time kept.
    let mixed = dir.path().join("mixed.csv");
    std::fs::write(&mixed, crate::MIXED).expect("writing the file");
    push(mixed.to_str().expect("UTF-8"), &["--max-error-rate", "0"]).assert_code(3);
    let pushed = scrape_checked(&format!("{gateway}/metrics")).await;
    let value = |name: &str, more: &[&str]| {
        let all: Vec<&str> = labels.iter().chain(more).copied().collect();
        sample(&pushed, name, &all)
    };
    assert_eq!(
        value(
            "txflow_batch_run_status",
            &["status=\"error_rate_exceeded\""]
        ),
        Some(1.0),
        "{pushed}"
    );
    assert_eq!(
        value("txflow_batch_run_status", &["status=\"succeeded\""]),
        Some(0.0)
    );
    assert_eq!(
        value("txflow_batch_rows_total", &["outcome=\"invalid\""]),
        Some(7.0)
    );
    assert_eq!(
        value("txflow_batch_last_success_timestamp_seconds", &[]),
        Some(success)
    );

    // The service's own metrics pass the linter too, with histograms.
    let served = scrape_checked(&format!("{}/metrics", serve.url)).await;
    assert!(
        sample(
            &served,
            "txflow_http_request_duration_seconds_bucket",
            &["route=\"/predict\"", "le=\"+Inf\""]
        )
        .is_some_and(|n| n > 0.0),
        "{served}"
    );
}
