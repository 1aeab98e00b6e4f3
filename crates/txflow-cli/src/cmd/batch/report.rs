//! What a batch run tells Prometheus: its metrics (`catalogue::batch`),
//! served with `--metrics-listen` while it goes and pushed to a Pushgateway
//! with `--pushgateway` when it starts and ends.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use txflow_core::{Counts, RunStatus};
use txflow_http::push::{PushError, Pushgateway, Replace};

use crate::catalogue::batch as metric;

const STATUSES: [RunStatus; 5] = [
    RunStatus::Running,
    RunStatus::Succeeded,
    RunStatus::SucceededWithRejects,
    RunStatus::ErrorRateExceeded,
    RunStatus::Failed,
];

/// The run's reporter: records its metrics and pushes them.
#[derive(Debug)]
pub struct Report {
    handle: PrometheusHandle,
    gateway: Option<Pushgateway>,
}

impl Report {
    pub fn new(handle: PrometheusHandle, gateway: Option<Pushgateway>) -> Report {
        Report { handle, gateway }
    }

    /// The run started: status running, pushed (keeping what the group held).
    pub async fn started(&self) {
        set_status(RunStatus::Running);
        metrics::gauge!(metric::DURATION).set(0.0);
        self.push(Replace::SameNames).await;
    }

    /// A file is finished: `delta` is what it added.
    pub fn file_done(&self, delta: &Counts, failed: bool, elapsed: Duration) {
        for (outcome, n) in [
            ("written", delta.written),
            ("present", delta.present),
            ("invalid", delta.invalid),
        ] {
            metrics::counter!(metric::ROWS, "outcome" => outcome).increment(n);
        }
        metrics::counter!(metric::UNCLASSIFIED).increment(delta.unclassified);
        metrics::counter!(metric::BYTES).increment(delta.bytes);
        let outcome = if failed { "failed" } else { "done" };
        metrics::counter!(metric::FILES, "outcome" => outcome).increment(1);
        metrics::gauge!(metric::DURATION).set(elapsed.as_secs_f64());
    }

    /// The run ended with `status`. A successful run replaces the group
    /// (with its last success time); any other keeps the group's last
    /// success time from an earlier run.
    pub async fn finished(&self, status: RunStatus, elapsed: Duration) {
        set_status(status);
        metrics::gauge!(metric::DURATION).set(elapsed.as_secs_f64());
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        metrics::gauge!(metric::LAST_RUN).set(now);
        let succeeded = matches!(
            status,
            RunStatus::Succeeded | RunStatus::SucceededWithRejects
        );
        if succeeded {
            metrics::gauge!(metric::LAST_SUCCESS).set(now);
            self.push(Replace::Group).await;
        } else {
            self.push(Replace::SameNames).await;
        }
    }

    /// Pushes what the process has recorded. A Pushgateway that is away
    /// does not fail the run: it is logged, and an alert on the last
    /// success time notices the silence.
    async fn push(&self, replace: Replace) {
        let Some(gateway) = &self.gateway else {
            return;
        };
        match gateway.push(self.handle.render(), replace).await {
            Ok(()) => tracing::debug!(url = gateway.url(), "metrics pushed"),
            Err(e) => tracing::warn!(error = %e, "the run's metrics were not pushed"),
        }
    }
}

fn set_status(status: RunStatus) {
    for s in STATUSES {
        let value = if s == status { 1.0 } else { 0.0 };
        metrics::gauge!(metric::STATUS, "status" => s.as_str()).set(value);
    }
}

/// `KEY=VALUE` of `--pushgateway-label`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// The grouping labels: those given, or `instance=<host name>`.
pub fn gateway(
    url: &str,
    job: &str,
    labels: &[(String, String)],
) -> Result<Pushgateway, PushError> {
    if labels.is_empty() {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        return Pushgateway::new(url, job, &[("instance".to_owned(), host)]);
    }
    Pushgateway::new(url, job, labels)
}
