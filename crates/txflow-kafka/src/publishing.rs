//! `txflow batch --publish`: a sink that publishes each batch's predictions
//! to the predictions topic before the database stores the batch, so the
//! sink connectors receive batch data as they receive streamed data.
//!
//! The broker acknowledges the events before the rows are written: a run
//! that stops in between publishes them again when it is rerun (the
//! connectors are idempotent by transaction id), never zero times.

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use txflow_core::ports::{BoxFuture, WriteReport};
use txflow_core::{Batch, BoxError, Sink};

use crate::client::Connection;
use crate::error::{Error, Result};
use crate::prediction;

/// Where predictions go, and the producer that sends them.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Checks the brokers answer and the topic exists, then makes an
    /// idempotent producer.
    pub async fn connect(connection: &Connection, topic: &str) -> Result<Publisher> {
        connection.check_reachable().await?;
        let producer = connection.idempotent_producer(&[("linger.ms", "5")])?;
        crate::topics::require(&producer, connection, topic).await?;
        Ok(Publisher {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Publishes the batch's predictions; returns once the broker has all.
    pub async fn publish(&self, batch: &Batch) -> Result<u64> {
        let predicted_at = chrono::Utc::now();
        let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(batch.predictions.len());
        for (key, value, _) in prediction::events(batch, predicted_at) {
            let record = FutureRecord::to(&self.topic)
                .key(&key[..])
                .payload(&value[..])
                .headers(prediction::headers());
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(source, _)| self.failed(source))?;
            deliveries.push(delivery);
        }
        let sent = deliveries.len() as u64;
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(self.failed(source)),
                Err(_) => return Err(self.failed(KafkaError::Canceled)),
            }
        }
        Ok(sent)
    }

    fn failed(&self, source: KafkaError) -> Error {
        Error::Publish {
            topic: self.topic.clone(),
            source,
        }
    }
}

/// A sink that publishes each batch's predictions (when it has a
/// [`Publisher`]) and then hands the batch to `inner`.
#[derive(Debug)]
pub struct PublishingSink<'a, S: ?Sized> {
    pub inner: &'a S,
    pub publisher: Option<Publisher>,
}

impl<S: Sink + ?Sized> Sink for PublishingSink<'_, S> {
    fn write_batch(&self, batch: Batch) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move {
            if let Some(publisher) = &self.publisher {
                publisher.publish(&batch).await?;
            }
            self.inner.write_batch(batch).await
        })
    }
}
