//! The broker's ceiling for the streaming benchmark: a plain rdkafka
//! consumer that reads N records of a topic and does nothing with them.
//!
//!     cargo run --release -p txflow-kafka --example plain_consume -- BROKERS TOPIC N [KEY=VALUE...]
//!
//! `KEY=VALUE` are librdkafka settings (the benchmark gives it the fetch
//! settings of txflow's members, so both wait for the broker alike).
//! Prints `<records> records in <seconds> s`.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, count, settings @ ..] = args.as_slice() else {
        return Err("usage: plain_consume BROKERS TOPIC N [KEY=VALUE...]".into());
    };
    let count: u64 = count.parse()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "txflow-bench-plain")
        .set("enable.auto.commit", "false");
    for setting in settings {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("{setting:?} is not KEY=VALUE"))?;
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut read = 0u64;
    let mut bytes = 0usize;
    while read < count {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                read += 1;
                bytes += m.payload_len();
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err(format!("no record for 10 s after {read}").into()),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{read} records ({bytes} bytes) in {seconds:.3} s");
    Ok(())
}
