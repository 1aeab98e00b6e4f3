//! `txflow topics create`: provision the streaming pipeline's topics.

use std::process::ExitCode;

use anyhow::Result;
use txflow_kafka::topics::{self, TopicSpec};

use crate::kafka_args::KafkaArgs;

/// Manage the streaming pipeline's topics.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicsCommand {
    /// Create the transactions, predictions and dead-letter topics; existing
    /// topics are left alone and their settings reported.
    Create {
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Partitions per topic.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Replication factor (lower it on a cluster of fewer brokers).
        #[arg(long, default_value_t = 3)]
        replication: i32,
    },
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let TopicsCommand::Create {
        kafka,
        partitions,
        replication,
    } = args.command;
    let specs: Vec<TopicSpec> = [
        &kafka.transactions_topic,
        &kafka.predictions_topic,
        &kafka.dead_letter_topic,
    ]
    .into_iter()
    .map(|name| TopicSpec {
        name: name.clone(),
        partitions,
        replication,
    })
    .collect();
    for report in topics::ensure(&kafka.connection()?, &specs).await? {
        println!(
            "{} {}: {} partitions, replication {}",
            report.name,
            if report.created {
                "created"
            } else {
                "exists (left alone)"
            },
            report.partitions,
            report.replication
        );
    }
    Ok(ExitCode::SUCCESS)
}
