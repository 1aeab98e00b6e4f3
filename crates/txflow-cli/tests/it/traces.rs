//! One trace across processes: `txflow produce` → `txflow consume` →
//! `txflow serve` → `txflow sink`, exported over OTLP/HTTP.
//!
//! No OpenTelemetry collector, Jaeger or Tempo can run here, so the test
//! runs `OtlpReceiverDouble`: a test double of the collector's OTLP/HTTP
//! traces endpoint (`POST /v1/traces`, `application/x-protobuf`
//! `ExportTraceServiceRequest`, as the OTLP specification documents it),
//! which decodes every export request with the protocol's own messages
//! (`opentelemetry-proto`) and keeps the spans.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use crate::connectors::sink;
use crate::harness::{Database, unique};
use crate::serve::Serve;
use crate::stream::{Member, Topics, wait_for};

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
}

/// The test double of an OTLP/HTTP collector (see the module's doc).
struct OtlpReceiverDouble {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl OtlpReceiverDouble {
    async fn start() -> OtlpReceiverDouble {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let kept = Arc::clone(&spans);
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let kept = Arc::clone(&kept);
                async move {
                    let request = ExportTraceServiceRequest::decode(body)
                        .expect("an ExportTraceServiceRequest");
                    let mut kept = kept.lock().expect("the spans");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                                Value::StringValue(s) => Some(s.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for s in scope.spans {
                                kept.push(Span {
                                    service: service.clone(),
                                    name: s.name,
                                    trace: s.trace_id,
                                    id: s.span_id,
                                    parent: s.parent_span_id,
                                });
                            }
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        OtlpReceiverDouble { url, spans }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("the spans").clone()
    }
}

/// A trace that goes through every process: produce → consume → classify
/// → the service's predict, and consume → sink.
fn complete_trace(spans: &[Span]) -> Option<Vec<Span>> {
    let find = |service: &str, name: &str, parent: &Span| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name && s.parent == parent.id)
            .cloned()
    };
    spans
        .iter()
        .filter(|s| s.service == "txflow-produce" && s.name == "txflow.produce")
        .find_map(|produced| {
            let consumed = find("txflow-consume", "txflow.consume", produced)?;
            let classified = find("txflow-consume", "txflow.classify", &consumed)?;
            let predicted = find("txflow-serve", "txflow.predict", &classified)?;
            let sunk = find("txflow-sink", "txflow.sink", &consumed)?;
            Some(vec![
                produced.clone(),
                consumed,
                classified,
                predicted,
                sunk,
            ])
        })
}

#[tokio::test]
async fn one_trace_follows_an_event_through_producer_member_service_and_sink() {
    let receiver = OtlpReceiverDouble::start().await;
    let otlp = ["--otlp-endpoint", receiver.url.as_str()];
    // Spans leave each process every 200 ms rather than every 5 s.
    let fast = [("OTEL_BSP_SCHEDULE_DELAY", "200")];
    let serve = Serve::start_with(&otlp).await;
    let topics = Topics::create();
    let db = Database::create().await;
    let mut member_flags = vec!["--classifier", serve.url.as_str()];
    member_flags.extend(otlp);
    let member = Member::start(&topics, &db, &unique("g"), "m1", &member_flags);
    let lake = tempfile::tempdir().expect("a temp dir");
    let lake_url = format!("file://{}", lake.path().display());
    let sink_member = sink(&topics, &lake_url, &otlp, &fast);

    topics.producer_with(20, 20, &otlp).wait();
    wait_for(&db, "predictions", 20, Duration::from_secs(60)).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let trace = loop {
        let spans = receiver.spans();
        if let Some(trace) = complete_trace(&spans) {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "no trace through every process in {} spans: {:?}\nmember:\n{}\nsink:\n{}",
            spans.len(),
            spans
                .iter()
                .map(|s| format!("{} {}", s.service, s.name))
                .collect::<std::collections::BTreeSet<_>>(),
            member.log(),
            sink_member.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // One trace id from end to end, across four processes.
    assert!(trace.iter().all(|s| s.trace == trace[0].trace), "{trace:?}");
    assert_eq!(trace[0].trace.len(), 16);
    let services: std::collections::BTreeSet<&str> =
        trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services.len(), 4, "{services:?}");
    sink_member.stop();
    member.stop();
}
