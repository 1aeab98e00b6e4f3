//! Pushing metrics to a Prometheus Pushgateway, as short-lived jobs (a
//! batch run) report: the text exposition format, to
//! `<URL>/metrics/job/<job>/<label>/<value>...`.

use std::time::Duration;

use base64::Engine;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("invalid --pushgateway URL {url:?}: {reason}; use http://host:9091")]
    Url { url: String, reason: String },
    #[error("invalid Pushgateway label {label:?}: {reason}")]
    Label { label: String, reason: String },
    #[error("pushing metrics to {url}: {reason}")]
    Push { url: String, reason: String },
}

/// Where a job's metrics go: the Pushgateway and the grouping key (`job`
/// and the labels that tell one job's instances apart).
#[derive(Debug, Clone)]
pub struct Pushgateway {
    client: reqwest::Client,
    /// `<URL>/metrics/job/<job>/<label>/<value>...`, encoded.
    url: reqwest::Url,
}

/// How a push treats what the group held before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// `PUT`: the group becomes exactly what is pushed.
    Group,
    /// `POST`: only the metrics pushed are replaced; others stay (a failed
    /// run keeps the last success time of an earlier one).
    SameNames,
}

impl Pushgateway {
    /// `labels` are the grouping labels besides `job` (e.g. `instance`).
    pub fn new(base: &str, job: &str, labels: &[(String, String)]) -> Result<Self, PushError> {
        let url_error = |reason: String| PushError::Url {
            url: base.to_owned(),
            reason,
        };
        let mut url = reqwest::Url::parse(base).map_err(|e| url_error(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(url_error(format!("the scheme is {:?}", url.scheme())));
        }
        let mut segments = vec!["metrics".to_owned()];
        segments.extend(segment_pair("job", job));
        for (name, value) in labels {
            let valid = !name.is_empty()
                && name != "job"
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(PushError::Label {
                    label: name.clone(),
                    reason: "a label name is letters, digits and _, not starting with a digit, and not job".into(),
                });
            }
            segments.extend(segment_pair(name, value));
        }
        url.path_segments_mut()
            .map_err(|()| url_error("it cannot have a path".into()))?
            .pop_if_empty()
            .extend(&segments);
        let client = crate::tls::client_builder(&url)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| url_error(e.to_string()))?;
        Ok(Pushgateway { client, url })
    }

    /// The group's URL (it holds no secret: a Pushgateway has no credentials
    /// in its URL here).
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Pushes `body` (Prometheus text format).
    pub async fn push(&self, body: String, replace: Replace) -> Result<(), PushError> {
        let request = match replace {
            Replace::Group => self.client.put(self.url.clone()),
            Replace::SameNames => self.client.post(self.url.clone()),
        };
        let failed = |reason: String| PushError::Push {
            url: self.url.to_string(),
            reason,
        };
        let response = request
            .header("content-type", "text/plain; version=0.0.4")
            .body(body)
            .send()
            .await
            .map_err(|e| failed(crate::client::describe(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(failed(format!("HTTP {status}: {}", text.trim())))
    }
}

/// A grouping label as two path segments; a value with a `/` (or an
/// empty one) in the Pushgateway's base64 form (`<label>@base64/<value>`).
fn segment_pair(name: &str, value: &str) -> [String; 2] {
    if value.is_empty() || value.contains('/') {
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(value);
        // An empty value is `=` in this form (base64 of nothing is empty).
        let encoded = if encoded.is_empty() {
            "=".to_owned()
        } else {
            encoded
        };
        [format!("{name}@base64"), encoded]
    } else {
        [name.to_owned(), value.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_grouping_key_becomes_the_path_with_slashes_in_base64() {
        let gateway = Pushgateway::new(
            "http://127.0.0.1:9091/",
            "txflow_batch",
            &labels(&[("dag", "txflow_batch"), ("file", "s3://bank/in/a b.csv")]),
        )
        .expect("valid");
        assert_eq!(
            gateway.url(),
            "http://127.0.0.1:9091/metrics/job/txflow_batch/dag/txflow_batch/file@base64/czM6Ly9iYW5rL2luL2EgYi5jc3Y="
        );
    }

    #[test]
    fn a_bad_label_or_url_is_refused_with_the_input() {
        let e = Pushgateway::new("http://h:9091", "j", &labels(&[("job", "x")]))
            .expect_err("job is reserved");
        assert!(e.to_string().contains("\"job\""), "{e}");
        let e = Pushgateway::new("ftp://h", "j", &[]).expect_err("not HTTP");
        assert!(e.to_string().contains("ftp://h"), "{e}");
    }
}
