//! `txflow topics create`: the three topics of the streaming pipeline.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::client::Connection;
use crate::error::{Error, Result};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
}

/// What became of a topic: created now, or found with these settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReport {
    pub name: String,
    pub created: bool,
    pub partitions: usize,
    pub replication: usize,
}

/// Creates the topics that do not exist; leaves the others alone and
/// reports their settings.
pub async fn ensure(connection: &Connection, specs: &[TopicSpec]) -> Result<Vec<TopicReport>> {
    connection.check_reachable().await?;
    let brokers = connection.brokers.as_str();
    let admin: AdminClient<DefaultClientContext> =
        connection
            .config(&[])
            .create()
            .map_err(|source| Error::Client {
                brokers: brokers.to_owned(),
                source,
            })?;
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|source| Error::Client {
            brokers: brokers.to_owned(),
            source,
        })?;
    let mut reports = Vec::with_capacity(specs.len());
    for (spec, result) in specs.iter().zip(results) {
        let created = match result {
            Ok(_) => true,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => false,
            Err((topic, code)) => {
                let hint = match code {
                    RDKafkaErrorCode::InvalidReplicationFactor => {
                        "; the cluster has fewer brokers than the replication factor: lower --replication"
                    }
                    RDKafkaErrorCode::InvalidPartitions => "; use at least 1 partition",
                    RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed => {
                        "; the client is not allowed to create topics: ask for the ACL or create them by hand"
                    }
                    _ => "",
                };
                return Err(Error::CreateTopic { topic, code, hint });
            }
        };
        let (partitions, replication) = visible(&admin, &spec.name).await?;
        reports.push(TopicReport {
            name: spec.name.clone(),
            created,
            partitions,
            replication,
        });
    }
    Ok(reports)
}

/// A created topic's partitions and replication factor once the broker's
/// metadata shows it: Kafka creates a topic asynchronously, and a member
/// started the moment `topics create` returned was refused with "does not
/// exist" (seen in the tests under load), so this waits up to 10 s for the
/// partitions to appear. A topic still invisible then reports 0 partitions.
async fn visible(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<(usize, usize)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|source| Error::Metadata {
                topic: topic.to_owned(),
                source,
            })?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| {
                let replicas = t.partitions().first().map_or(0, |p| p.replicas().len());
                (t.partitions().len(), replicas)
            });
        match found {
            Some(found) => return Ok(found),
            None if std::time::Instant::now() >= deadline => return Ok((0, 0)),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Fails unless `topic` exists with at least one partition: records sent to
/// a missing topic would only wait. The metadata call blocks, so it runs off
/// the runtime's threads.
pub async fn require(
    producer: &rdkafka::producer::FutureProducer,
    connection: &Connection,
    topic: &str,
) -> Result<()> {
    let (producer, name) = (producer.clone(), topic.to_owned());
    let metadata = tokio::task::spawn_blocking(move || {
        rdkafka::producer::Producer::client(&producer)
            .fetch_metadata(Some(&name), Duration::from_secs(10))
    })
    .await
    .map_err(|_| Error::Client {
        brokers: connection.brokers.clone(),
        source: rdkafka::error::KafkaError::Canceled,
    })?
    .map_err(|source| Error::Client {
        brokers: connection.brokers.clone(),
        source,
    })?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(Error::MissingTopic {
            topic: topic.to_owned(),
        });
    }
    Ok(())
}
