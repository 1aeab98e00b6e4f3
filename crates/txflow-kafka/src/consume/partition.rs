//! One partition's records made ready to store: decoded, validated (the
//! core's rules, UUID ids required) and classified; what fails becomes a
//! rejected record and a dead letter.

use tracing::Instrument;
use txflow_core::transaction::DecimalMark;
use txflow_core::{
    Classifier, Position, Prediction, RejectedRecord, Rule, Transaction, Unclassified, Validator,
    pipeline,
};

use super::publish::DeadLetter;
use crate::error::{Error, Result};
use crate::event::EventFields;
use crate::record::Record;

/// What one partition's records became.
#[derive(Debug)]
pub(super) struct Prepared<'m> {
    pub transactions: Vec<Transaction>,
    pub positions: Vec<Position>,
    pub predictions: Vec<Prediction>,
    pub unclassified: Vec<Unclassified>,
    pub rejected: Vec<RejectedRecord>,
    pub dead: Vec<DeadLetter<'m>>,
    /// Kafka timestamps (ms) of the valid records, for end-to-end latency.
    pub timestamps: Vec<i64>,
    /// With traces on: the span of each traced record (ended when this is
    /// dropped, after publishing), by offset.
    pub traces: Traces,
}

/// The spans of a partition's traced records, by offset.
#[derive(Debug, Default)]
pub(crate) struct Traces(Vec<(i64, tracing::Span)>);

impl Traces {
    /// A `txflow.<stage>` span for each record that carries a trace context.
    pub(crate) fn of(stage: &'static str, messages: &[Record]) -> Traces {
        if !txflow_trace::enabled() {
            return Traces::default();
        }
        Traces(
            messages
                .iter()
                .filter_map(|m| {
                    let parent = m.header(txflow_trace::HEADER)?;
                    Some((
                        m.offset(),
                        txflow_trace::span(stage, "consumer", Some(parent)),
                    ))
                })
                .collect(),
        )
    }

    /// The `traceparent` to send on with what record `offset` became.
    pub(crate) fn traceparent(&self, offset: i64) -> Option<String> {
        let i = self.0.binary_search_by_key(&offset, |(o, _)| *o).ok()?;
        txflow_trace::traceparent(&self.0[i].1)
    }

    /// The span that work done for several records at once (a request to
    /// the classification service) belongs to: the first traced record's.
    pub(crate) fn first(&self) -> tracing::Span {
        self.0
            .first()
            .map_or_else(tracing::Span::none, |(_, s)| s.clone())
    }
}

/// Decodes, validates and classifies `messages` (one partition's, in
/// offset order) read from `location` (`kafka://topic/partition`).
pub(super) async fn prepare<'m, C: Classifier>(
    classifier: &C,
    location: &str,
    messages: &'m [Record],
) -> Result<Prepared<'m>> {
    let traces = Traces::of("txflow.consume", messages);
    let validator = Validator::new(location.into(), DecimalMark::Point).requiring_uuid_ids();
    let mut transactions = Vec::with_capacity(messages.len());
    let mut positions = Vec::with_capacity(messages.len());
    let mut valid: Vec<&Record> = Vec::with_capacity(messages.len());
    let mut rejected = Vec::new();
    let mut dead = Vec::new();
    for m in messages {
        let offset = m.offset().max(0) as u64;
        let position = Position {
            line: offset,
            offset,
        };
        match EventFields::decode(m.payload()) {
            Ok(fields) => match validator.validate(&fields.record(position)) {
                Ok(tx) => {
                    transactions.push(tx);
                    positions.push(position);
                    valid.push(m);
                }
                Err(violation) => {
                    let record = validator.reject(&fields.record(position), violation);
                    dead.push(DeadLetter {
                        message: m,
                        class: "validation",
                        rule: record.rule.name().to_owned(),
                        text: record.message.clone(),
                    });
                    rejected.push(record);
                }
            },
            Err(e) => {
                let raw = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                dead.push(DeadLetter {
                    message: m,
                    class: "decode",
                    rule: Rule::EventFormat.name().to_owned(),
                    text: e.to_string(),
                });
                rejected.push(RejectedRecord {
                    source: location.into(),
                    position,
                    rule: Rule::EventFormat,
                    field: None,
                    message: e.to_string(),
                    raw,
                });
            }
        }
    }
    // The request to the classifier is a child of the first traced record.
    let classifying = traces
        .first()
        .in_scope(|| txflow_trace::span("txflow.classify", "internal", None));
    let (predictions, unclassified) =
        pipeline::classify(classifier, &transactions, &positions, location)
            .instrument(classifying)
            .await
            .map_err(|source| Error::Pipeline {
                location: location.to_owned(),
                source,
            })?;
    // Failed items come back in the order of the transactions, each with its
    // position: walk both once (two events may share an id, never an offset).
    let mut next = 0;
    for u in &unclassified {
        while next < positions.len() && positions[next] != u.position {
            next += 1;
        }
        if let Some(&message) = valid.get(next) {
            dead.push(DeadLetter {
                message,
                class: "classification",
                rule: u.failure.class.as_str().to_owned(),
                text: u.failure.message.clone(),
            });
            next += 1;
        }
    }
    let timestamps = valid
        .iter()
        .filter_map(|m| m.timestamp().to_millis())
        .collect();
    Ok(Prepared {
        transactions,
        positions,
        predictions,
        unclassified,
        rejected,
        dead,
        timestamps,
        traces,
    })
}
