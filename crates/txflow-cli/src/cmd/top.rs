//! `txflow top`: a live view of a running pipeline, from its members'
//! `/metrics` (stream members, sink members, the classification service).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use prometheus_parse::{Scrape, Value};

use crate::classifier::parse_duration;

const EXAMPLES: &str = "\
Examples:
  txflow top 127.0.0.1:9464 127.0.0.1:9465
  txflow top --once http://consume-1:9464/metrics http://sink-1:9464 > status.txt

In a configuration file: [top] url = [\"consume-1:9464\", \"sink-1:9464\"].";

/// Watch a running pipeline: per member, records per second in and out,
/// lag per partition, dead letters per second, the classifier's circuit,
/// p99 latency and database write time, refreshed every second.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// The members' metrics endpoints: host:port, http://host:port or a
    /// full URL (`/metrics` is added when there is no path).
    #[arg(value_name = "URL")]
    urls: Vec<String>,

    /// More endpoints (the configuration file's `url = [...]`).
    #[arg(long = "url", value_name = "URL")]
    more_urls: Vec<String>,

    /// Print one plain table (from two scrapes, --interval apart) and exit.
    #[arg(long)]
    once: bool,

    /// Time between refreshes (and between the two scrapes of --once).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let urls: Vec<String> = args
        .urls
        .iter()
        .chain(&args.more_urls)
        .map(|u| endpoint(u))
        .collect::<Result<_>>()?;
    if urls.is_empty() {
        bail!("no endpoint: give the members' metrics addresses, e.g. `txflow top 127.0.0.1:9464`");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2).min(args.interval.max(Duration::from_millis(500))))
        .build()?;
    let mut before = scrape_all(&client, &urls).await;
    if args.once {
        tokio::time::sleep(args.interval).await;
        let after = scrape_all(&client, &urls).await;
        print!("{}", table(&views(&urls, &before, &after)));
        return Ok(ExitCode::SUCCESS);
    }
    let clear = std::io::stdout().is_terminal();
    loop {
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
        let after = scrape_all(&client, &urls).await;
        let text = table(&views(&urls, &before, &after));
        if clear {
            // Home and clear, then the table: a redraw in place.
            print!("\x1b[H\x1b[2J");
        }
        println!(
            "txflow top: {} endpoint(s), every {:?} (Ctrl-C quits)\n",
            urls.len(),
            args.interval
        );
        print!("{text}");
        before = after;
    }
}

/// `host:port` or a URL without a path → `http://host:port/metrics`.
fn endpoint(given: &str) -> Result<String> {
    let with_scheme = if given.contains("://") {
        given.to_owned()
    } else {
        format!("http://{given}")
    };
    let mut url = reqwest::Url::parse(&with_scheme).map_err(|e| {
        anyhow::anyhow!(
            "{given:?} is not a metrics address ({e}); use host:port or http://host:port/metrics"
        )
    })?;
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/metrics");
    }
    Ok(url.to_string())
}

/// One scrape of an endpoint: when, and what (or why not).
struct Scraped {
    at: Instant,
    result: std::result::Result<Scrape, String>,
}

async fn scrape_all(client: &reqwest::Client, urls: &[String]) -> Vec<Scraped> {
    futures::future::join_all(urls.iter().map(|url| scrape(client, url))).await
}

async fn scrape(client: &reqwest::Client, url: &str) -> Scraped {
    let result = async {
        let response = client.get(url).send().await.map_err(|e| reason(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let text = response.text().await.map_err(|e| reason(&e))?;
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .map_err(|e| format!("not Prometheus text: {e}"))
    }
    .await;
    Scraped {
        at: Instant::now(),
        result,
    }
}

/// The innermost cause of a request error (connection refused, timeout).
fn reason(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if e.is_timeout() {
        "timed out".to_owned()
    } else {
        source.to_string()
    }
}

/// What one endpoint shows over the last interval.
#[derive(Debug, Default, PartialEq)]
struct View {
    url: String,
    kind: String,
    in_rate: Option<f64>,
    out_rate: Option<f64>,
    lag: Vec<(String, f64)>,
    dead_rate: Option<f64>,
    circuit: Option<&'static str>,
    p99: Option<f64>,
    db_write_p99: Option<f64>,
    error: Option<String>,
}

fn views(urls: &[String], before: &[Scraped], after: &[Scraped]) -> Vec<View> {
    urls.iter()
        .zip(before.iter().zip(after))
        .map(|(url, (b, a))| match (&b.result, &a.result) {
            (_, Err(e)) => View {
                url: url.clone(),
                error: Some(format!("unreachable: {e}")),
                ..View::default()
            },
            (Err(_), Ok(now)) => view(url, now, now, 0.0),
            (Ok(then), Ok(now)) => view(url, then, now, (a.at - b.at).as_secs_f64()),
        })
        .collect()
}

/// The sum of a counter's or gauge's series whose labels match `filter`.
fn total(s: &Scrape, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for sample in s.samples.iter().filter(|x| x.metric == name) {
        if !filter.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)) {
            continue;
        }
        let value = match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => continue,
        };
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// Per second over `seconds`; a counter that went down restarted from 0.
fn rate(
    before: &Scrape,
    after: &Scrape,
    name: &str,
    filter: &[(&str, &str)],
    seconds: f64,
) -> Option<f64> {
    let now = total(after, name, filter)?;
    if seconds <= 0.0 {
        return None;
    }
    let then = total(before, name, filter).unwrap_or(0.0);
    let delta = if now >= then { now - then } else { now };
    Some(delta / seconds)
}

/// A histogram's buckets (upper bound, cumulative count), summed over its
/// series whose labels match `filter`.
fn buckets(s: &Scrape, name: &str, filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let mut sum: Vec<(f64, f64)> = Vec::new();
    for sample in s.samples.iter().filter(|x| x.metric == name) {
        if !filter.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)) {
            continue;
        }
        if let Value::Histogram(counts) = &sample.value {
            for c in counts {
                match sum.iter_mut().find(|(le, _)| *le == c.less_than) {
                    Some((_, n)) => *n += c.count,
                    None => sum.push((c.less_than, c.count)),
                }
            }
        }
    }
    sum.sort_by(|a, b| a.0.total_cmp(&b.0));
    sum
}

/// The `q` quantile of what was observed between two scrapes, interpolated
/// within a bucket as Prometheus's `histogram_quantile` does; `None` when
/// nothing was observed.
fn quantile(
    before: &Scrape,
    after: &Scrape,
    name: &str,
    filter: &[(&str, &str)],
    q: f64,
) -> Option<f64> {
    let then = buckets(before, name, filter);
    let now = buckets(after, name, filter);
    let delta: Vec<(f64, f64)> = now
        .iter()
        .map(|(le, n)| {
            let old = then.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
            (*le, if *n >= old { n - old } else { *n })
        })
        .collect();
    let count = delta.last()?.1;
    if count <= 0.0 {
        return None;
    }
    let rank = q * count;
    let mut lower = (0.0, 0.0);
    for (le, n) in &delta {
        if *n >= rank {
            if le.is_infinite() {
                // Above the last finite bound: that bound is all we know.
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (n - lower.1).max(f64::MIN_POSITIVE);
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (*le, *n);
    }
    None
}

fn view(url: &str, before: &Scrape, after: &Scrape, seconds: f64) -> View {
    // The names from the crates' catalogues, which docs/METRICS.md is
    // checked against.
    use txflow_http::client::metric as client;
    use txflow_http::server::metric as serve;
    use txflow_postgres::metric as database;
    let has = |name: &str| after.samples.iter().any(|s| s.metric == name);
    let mut v = View {
        url: url.to_owned(),
        ..View::default()
    };
    let db_write = [("operation", "writing a batch")];
    if stream_view(&mut v, before, after, seconds) {
        // A stream member or a sink.
    } else if has(serve::REQUESTS) {
        v.kind = "serve".into();
        // Transactions received: the sum of the request sizes.
        v.in_rate = rate(
            before,
            after,
            &format!("{}_sum", serve::BATCH_SIZE),
            &[],
            seconds,
        );
        v.out_rate = rate(before, after, serve::PREDICTIONS, &[], seconds);
        v.p99 = quantile(
            before,
            after,
            serve::LATENCY,
            &[("route", "/predict")],
            0.99,
        );
    } else {
        v.kind = "?".into();
    }
    v.circuit = total(after, client::CIRCUIT, &[]).map(|state| match state as i64 {
        0 => "closed",
        1 => "open",
        2 => "half-open",
        _ => "?",
    });
    v.db_write_p99 = quantile(before, after, database::OPERATION_SECONDS, &db_write, 0.99);
    v
}

/// The view of a stream member or a sink, if `after` is one's metrics.
#[cfg(feature = "kafka")]
fn stream_view(v: &mut View, before: &Scrape, after: &Scrape, seconds: f64) -> bool {
    use txflow_kafka::consume::metric as stream;
    use txflow_kafka::sink::metric as sink;
    let has = |name: &str| after.samples.iter().any(|s| s.metric == name);
    if has(stream::CONSUMED) {
        v.kind = "consume".into();
        v.in_rate = rate(before, after, stream::CONSUMED, &[], seconds);
        v.out_rate = rate(before, after, stream::WRITTEN, &[], seconds);
        v.dead_rate = rate(before, after, stream::DEAD_LETTERS, &[], seconds).or(Some(0.0));
        v.p99 = quantile(before, after, stream::END_TO_END_SECONDS, &[], 0.99);
    } else if has(sink::READ) {
        let sink = after
            .samples
            .iter()
            .find(|s| s.metric == sink::READ)
            .and_then(|s| s.labels.get("sink"))
            .unwrap_or("?");
        v.kind = format!("sink {sink}");
        v.in_rate = rate(before, after, sink::READ, &[], seconds);
        v.out_rate = rate(before, after, sink::WRITTEN, &[], seconds);
        let refused = rate(
            before,
            after,
            sink::ERRORS,
            &[("class", "refused")],
            seconds,
        );
        let decode = rate(before, after, sink::ERRORS, &[("class", "decode")], seconds);
        v.dead_rate = Some(refused.unwrap_or(0.0) + decode.unwrap_or(0.0));
        v.p99 = quantile(before, after, sink::WRITE_SECONDS, &[], 0.99);
    } else {
        return false;
    }
    for s in after.samples.iter().filter(|s| s.metric == stream::LAG) {
        if let Value::Gauge(n) = s.value {
            let topic = s.labels.get("topic").unwrap_or("?");
            let partition = s.labels.get("partition").unwrap_or("?");
            v.lag.push((format!("{topic}/{partition}"), n));
        }
    }
    v.lag.sort_by(|a, b| a.0.cmp(&b.0));
    true
}

/// Without Kafka there is no stream member to look at.
#[cfg(not(feature = "kafka"))]
fn stream_view(_: &mut View, _: &Scrape, _: &Scrape, _: f64) -> bool {
    false
}

fn number(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(n) if n >= 100.0 => format!("{n:.0}"),
        Some(n) => format!("{n:.1}"),
    }
}

fn seconds(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1000.0),
        Some(s) => format!("{s:.2}s"),
    }
}

/// The plain table: one line per endpoint, then the lag of each partition.
fn table(views: &[View]) -> String {
    let header = [
        "ENDPOINT",
        "KIND",
        "IN/S",
        "OUT/S",
        "LAG",
        "DEAD/S",
        "CIRCUIT",
        "P99",
        "DB WRITE P99",
    ];
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            if let Some(e) = &v.error {
                return vec![v.url.clone(), e.clone()];
            }
            let lag = (!v.lag.is_empty()).then(|| v.lag.iter().map(|(_, n)| n).sum::<f64>());
            vec![
                v.url.clone(),
                v.kind.clone(),
                number(v.in_rate),
                number(v.out_rate),
                lag.map_or("-".into(), |n| format!("{n:.0}")),
                number(v.dead_rate),
                v.circuit.unwrap_or("-").to_owned(),
                seconds(v.p99),
                seconds(v.db_write_p99),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows.iter().filter(|r| r.len() == header.len()) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from), &mut out);
    for row in &rows {
        line(row, &mut out);
    }
    let with_lag: Vec<&View> = views.iter().filter(|v| !v.lag.is_empty()).collect();
    if !with_lag.is_empty() {
        out.push_str("\nLAG BY PARTITION\n");
        for v in with_lag {
            let parts: Vec<String> = v.lag.iter().map(|(p, n)| format!("{p}={n:.0}")).collect();
            let _ = writeln!(out, "{}  {}", v.url, parts.join(" "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
    }

    const HISTOGRAM_TYPE: &str = "# TYPE txflow_stream_end_to_end_seconds histogram\n";

    fn member(consumed: u64, written: u64, dead: u64, e2e: [u64; 3]) -> Scrape {
        parse(&format!(
            "# TYPE txflow_stream_records_consumed_total counter\n\
             txflow_stream_records_consumed_total {consumed}\n\
             # TYPE txflow_stream_transactions_written_total counter\n\
             txflow_stream_transactions_written_total {written}\n\
             # TYPE txflow_stream_dead_letters_total counter\n\
             txflow_stream_dead_letters_total{{class=\"decode\"}} {dead}\n\
             # TYPE txflow_consumer_lag gauge\n\
             txflow_consumer_lag{{topic=\"t\",partition=\"1\"}} 7\n\
             txflow_consumer_lag{{topic=\"t\",partition=\"0\"}} 5\n\
             # TYPE txflow_classifier_circuit_state gauge\n\
             txflow_classifier_circuit_state 1\n\
             {HISTOGRAM_TYPE}\
             txflow_stream_end_to_end_seconds_bucket{{le=\"0.05\"}} {}\n\
             txflow_stream_end_to_end_seconds_bucket{{le=\"0.1\"}} {}\n\
             txflow_stream_end_to_end_seconds_bucket{{le=\"+Inf\"}} {}\n",
            e2e[0], e2e[1], e2e[2]
        ))
    }

    #[test]
    fn a_member_s_rates_lag_circuit_and_p99_come_from_two_scrapes() {
        let before = member(1_000, 900, 10, [0, 0, 0]);
        // 100 observations: 90 under 50 ms, the other 10 between 50 and 100 ms.
        let after = member(3_000, 2_900, 30, [90, 100, 100]);
        let v = view("http://m:9464/metrics", &before, &after, 2.0);
        assert_eq!(v.kind, "consume");
        assert_eq!(v.in_rate, Some(1_000.0));
        assert_eq!(v.out_rate, Some(1_000.0));
        assert_eq!(v.dead_rate, Some(10.0));
        assert_eq!(v.circuit, Some("open"));
        assert_eq!(v.lag, [("t/0".to_owned(), 5.0), ("t/1".to_owned(), 7.0)]);
        // Rank 99 of 100: nine tenths of the way through (0.05, 0.1].
        let p99 = v.p99.expect("observations");
        assert!((p99 - 0.095).abs() < 1e-9, "{p99}");
        let text = table(&[v]);
        assert!(
            text.contains("consume") && text.contains("1000") && text.contains("95.0ms"),
            "{text}"
        );
        assert!(text.contains("t/0=5 t/1=7"), "{text}");
    }

    #[test]
    fn no_observation_shows_no_quantile_and_a_restart_counts_from_zero() {
        let before = member(5_000, 5_000, 0, [10, 10, 10]);
        let after = member(200, 200, 0, [10, 10, 10]);
        let v = view("m", &before, &after, 1.0);
        assert_eq!(v.p99, None);
        assert_eq!(v.in_rate, Some(200.0));
    }

    #[test]
    fn an_unreachable_endpoint_is_a_line_that_says_so() {
        let v = View {
            url: "http://127.0.0.1:1/metrics".into(),
            error: Some("unreachable: Connection refused".into()),
            ..View::default()
        };
        let text = table(&[v]);
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.contains("unreachable: Connection refused")),
            "{text}"
        );
    }

    #[test]
    fn an_address_becomes_a_metrics_url() {
        assert_eq!(
            endpoint("127.0.0.1:9464").expect("valid"),
            "http://127.0.0.1:9464/metrics"
        );
        assert_eq!(endpoint("http://h:1/m").expect("valid"), "http://h:1/m");
        assert!(endpoint("http://").is_err());
    }
}
