//! What txflow tells Prometheus: `/metrics` that pass `promtool check
//! metrics`, batch runs pushed to the real Pushgateway the harness
//! started, and a real Prometheus scraping a running stream: the
//! dashboard's queries answer and the alert rules fire.

use std::time::{Duration, Instant};

use crate::harness::{Database, harness_var, reference_file, scrape_checked, txflow, unique};
use crate::serve::Serve;
use crate::stream::{Member, Topics, wait_for};

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

/// [`sample`] of one pushed group (`group`'s labels) with `more` labels.
fn group_sample(text: &str, group: &[&str], name: &str, more: &[&str]) -> Option<f64> {
    let all: Vec<&str> = group.iter().chain(more).copied().collect();
    sample(text, name, &all)
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
    let value = |name: &str, more: &[&str]| group_sample(&pushed, &labels, name, more);
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
    let value = |name: &str, more: &[&str]| group_sample(&pushed, &labels, name, more);
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

/// A Prometheus of the test's own (the Debian package's binary), scraping
/// the given jobs every second and evaluating `deploy/observability/alerts.yml`
/// every second, with every `for:` shortened to 2 s.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(jobs: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("a temp dir");
        let rules: String = include_str!("../../../../deploy/observability/alerts.yml")
            .lines()
            .map(|line| match line.trim_start().strip_prefix("for: ") {
                Some(_) => format!("{}for: 2s\n", &line[..line.len() - line.trim_start().len()]),
                None => format!("{line}\n"),
            })
            .collect();
        std::fs::write(dir.path().join("alerts.yml"), rules).expect("writing the rules");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\nscrape_configs:\n",
        );
        for (job, target) in jobs {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("writing the config");
        let port = crate::servers::free_port();
        let child = std::process::Command::new(harness_var("TXFLOW_TEST_PROMETHEUS_BIN"))
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let prometheus = Prometheus {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::harness::get(format!("{}/-/ready", prometheus.url))
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(Instant::now() < deadline, "Prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        prometheus
    }

    /// The samples an instant query answers: (labels, value).
    async fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", query)],
        )
        .expect("a URL");
        let answer: serde_json::Value = crate::harness::get(url)
            .await
            .expect("the query API")
            .json()
            .await
            .expect("JSON");
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .expect("a value")
                    .parse()
                    .expect("a number");
                (s["metric"].clone(), value)
            })
            .collect()
    }

    /// The state (pending, firing) of each active alert named `name`.
    async fn alert_states(&self, name: &str) -> Vec<String> {
        let answer: serde_json::Value = crate::harness::get(format!("{}/api/v1/alerts", self.url))
            .await
            .expect("the alerts API")
            .json()
            .await
            .expect("JSON");
        answer["data"]["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The queries of the dashboard panel titled `title`, with Grafana's
/// variables filled in as Grafana would.
fn dashboard_queries(title: &str) -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../../../deploy/observability/grafana/txflow.json"
    ))
    .expect("the dashboard is JSON");
    let panel = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?} in the dashboard"));
    panel["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("a query")
                .replace("$__rate_interval", "10s")
                .replace("$job", ".*")
        })
        .collect()
}

#[tokio::test]
async fn a_real_prometheus_answers_the_dashboard_queries_and_fires_the_circuit_alert() {
    let serve = Serve::start().await;
    let topics = Topics::create();
    let db = Database::create().await;
    let metrics = format!("127.0.0.1:{}", crate::servers::free_port());
    let member = Member::start(
        &topics,
        &db,
        &unique("g"),
        "m1",
        &["--metrics-listen", &metrics, "--classifier", &serve.url],
    );
    let serve_target = serve.url.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&[
        ("txflow-consume", &metrics),
        ("txflow-serve", &serve_target),
    ])
    .await;

    // A stream: the dashboard's throughput, lag and latency queries answer.
    let producer = topics.producer(12_000, 1_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<String>;
    loop {
        missing = Vec::new();
        for title in [
            "Records in and out",
            "Lag per partition",
            "End-to-end latency",
        ] {
            for query in dashboard_queries(title) {
                let samples = prometheus.query(&query).await;
                if !samples.iter().any(|(_, v)| v.is_finite()) {
                    missing.push(query);
                }
            }
        }
        let throughput = prometheus
            .query("sum(rate(txflow_stream_records_consumed_total[10s]))")
            .await;
        if missing.is_empty() && throughput.first().is_some_and(|(_, v)| *v > 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no answer to {missing:?}\n{}",
            member.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lag = prometheus
        .query(&dashboard_queries("Lag per partition")[0])
        .await;
    assert!(
        lag.iter()
            .all(|(labels, _)| labels["partition"].is_string()),
        "{lag:?}"
    );
    // `txflow top` shows the member at work, and an endpoint that is not
    // there as such.
    let nobody = format!("127.0.0.1:{}", crate::servers::free_port());
    let top = txflow(&std::env::temp_dir(), &["top", "--once", &metrics, &nobody]);
    top.assert_code(0);
    let row = |address: &str| -> Vec<String> {
        top.stdout
            .lines()
            .find(|l| l.starts_with(&format!("http://{address}/metrics")))
            .unwrap_or_else(|| panic!("no line for {address} in\n{}", top.stdout))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let member_row = row(&metrics);
    assert_eq!(member_row[1], "consume", "{}", top.stdout);
    let records_in: f64 = member_row[2].parse().expect("records/s in");
    assert!(records_in > 0.0, "{}", top.stdout);
    assert_eq!(member_row[6], "closed", "{}", top.stdout);
    assert!(top.stdout.contains("LAG BY PARTITION"), "{}", top.stdout);
    assert_eq!(row(&nobody)[1], "unreachable:", "{}", top.stdout);

    producer.wait();
    wait_for(&db, "predictions", 12_000, Duration::from_secs(60)).await;
    assert!(
        prometheus
            .alert_states("TxflowClassifierCircuitOpen")
            .await
            .is_empty()
    );

    // The service dies while events keep coming: the member's circuit
    // opens, and the alert goes pending, then firing.
    drop(serve);
    topics.produce(200);
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|s| s == "firing") {
        assert!(
            Instant::now() < deadline,
            "the circuit alert did not fire (states seen: {seen:?})\n{}",
            member.log()
        );
        for state in prometheus.alert_states("TxflowClassifierCircuitOpen").await {
            if seen.last() != Some(&state) {
                seen.push(state);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen, ["pending", "firing"], "{seen:?}");
    member.stop();
}
