//! Traces across txflow's processes: OpenTelemetry spans made with
//! `tracing`, exported over OTLP/HTTP, and the W3C trace context
//! (`traceparent`) carried in Kafka headers (producer → stream member →
//! predictions and dead letters → sinks) and HTTP headers (client →
//! `txflow serve`), so that one trace follows a transaction through every
//! process.
//!
//! Off unless the binary installs [`layer`] (`--otlp-endpoint` or the
//! standard `OTEL_EXPORTER_OTLP_*` variables). Off, [`span`] returns a
//! disabled span and [`traceparent`] nothing: the cost is a branch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The header that carries the trace context, in Kafka and HTTP alike.
pub const HEADER: &str = "traceparent";

/// The `tracing` target of txflow's spans: the trace layer takes them, the
/// log output leaves them out.
pub const TARGET: &str = "txflow_trace";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("the OTLP endpoint {endpoint:?} cannot be used: {reason}; give http://host:4318")]
    Endpoint { endpoint: String, reason: String },
}

/// Whether spans are exported (a [`layer`] is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Exports spans until dropped; dropping it sends what is left.
#[derive(Debug)]
pub struct Guard(SdkTracerProvider);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("warning: the last spans were not exported: {e}");
        }
    }
}

/// Where spans go: `endpoint` is the OTLP/HTTP base URL
/// (`http://collector:4318`, spans to `/v1/traces`); without it, the
/// standard variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, `…_HEADERS`, `…_TIMEOUT`) say. The service
/// name is `OTEL_SERVICE_NAME` when set, `service` otherwise.
pub fn layer<S>(service: &str, endpoint: Option<&str>) -> Result<(impl Layer<S>, Guard), TraceError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    use opentelemetry_otlp::WithExportConfig;

    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(base) = endpoint {
        builder = builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let shown = endpoint
        .map(str::to_owned)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").ok())
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .unwrap_or_default();
    let exporter = builder.build().map_err(|e| TraceError::Endpoint {
        endpoint: shown,
        reason: e.to_string(),
    })?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("txflow");
    ENABLED.store(true, Ordering::Relaxed);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target(TARGET, tracing::Level::TRACE));
    Ok((layer, Guard(provider)))
}

/// A span named `name` (`txflow.consume`, ...) of kind `kind` (producer,
/// consumer, client, server, internal), child of the trace context
/// `parent` (a `traceparent` value) when there is one, else of the current
/// span. Disabled when traces are off.
pub fn span(name: &'static str, kind: &'static str, parent: Option<&[u8]>) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "txflow", otel.name = name, otel.kind = kind);
    if let Some(context) = parent.and_then(extract) {
        // Only fails without the trace layer, which `enabled` rules out.
        let _ = span.set_parent(context);
    }
    span
}

/// The `traceparent` of `span`, to send on; `None` when traces are off or
/// the span is not sampled.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(HEADER)
}

/// The context a `traceparent` value names, if it is valid W3C.
fn extract(value: &[u8]) -> Option<opentelemetry::Context> {
    let value = std::str::from_utf8(value).ok()?;
    let carrier: HashMap<String, String> = HashMap::from([(HEADER.to_owned(), value.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_w3c_traceparent_is_read_and_garbage_is_not() {
        let valid = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = extract(valid).expect("a valid traceparent");
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(extract(b"00-zz-00f067aa0ba902b7-01").is_none());
        assert!(extract(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn with_traces_off_spans_are_disabled_and_carry_nothing() {
        let span = span("txflow.test", "internal", None);
        assert!(span.is_disabled());
        assert_eq!(traceparent(&span), None);
    }
}
