//! `txflow batch --publish`: batch data reaches the predictions topic as
//! streamed data does, in the same versioned event.

use std::collections::HashSet;
use std::path::Path;

use rdkafka::message::Message;

use crate::harness::{Database, txflow};
use crate::stream::{Topics, assert_valid_events};

fn sample() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples/transactions_sample.csv")
        .display()
        .to_string()
}

#[tokio::test]
async fn a_batch_run_with_publish_puts_every_stored_prediction_on_the_topic_as_a_valid_event() {
    let topics = Topics::create();
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a directory");
    let file = sample();
    let mut args = vec![
        "batch".to_owned(),
        file.clone(),
        "--publish".to_owned(),
        "--database-url".to_owned(),
        db.url.clone(),
    ];
    args.extend(topics.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    txflow(dir.path(), &args).assert_code(0);

    let stored = db.count("predictions", "").await;
    assert!(stored > 0);
    let events = topics.read_all(&topics.predictions);
    assert_valid_events(&events, "batch");
    let keys: HashSet<&[u8]> = events.iter().filter_map(Message::key).collect();
    assert_eq!(keys.len() as i64, stored, "one event per stored prediction");
    // Lineage: the file and its line, as in the database.
    let first: serde_json::Value =
        serde_json::from_slice(events[0].payload().expect("a value")).expect("JSON");
    let id = first["transaction"]["id"].as_str().expect("an id");
    let line = db
        .count_sql(&format!(
            "SELECT source_line FROM transactions WHERE id = '{id}'"
        ))
        .await;
    assert_eq!(first["lineage"]["line"], line);
    assert!(
        first["lineage"]["source"]
            .as_str()
            .is_some_and(|s| s.ends_with("transactions_sample.csv")),
        "{first}"
    );

    // A rerun stores nothing new; it publishes again (at least once), and
    // the events are the same transactions.
    txflow(dir.path(), &args).assert_code(0);
    assert_eq!(db.count("predictions", "").await, stored);
    let again = topics.read_all(&topics.predictions);
    assert_eq!(again.len(), 2 * events.len());
    let keys_again: HashSet<&[u8]> = again.iter().filter_map(Message::key).collect();
    assert_eq!(keys_again, keys);
}

#[tokio::test]
async fn publish_to_a_missing_topic_stops_before_anything_is_stored_and_names_the_topic() {
    let topics = Topics::create();
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a directory");
    let file = sample();
    let mut args = vec![
        "batch".to_owned(),
        file,
        "--publish".to_owned(),
        "--database-url".to_owned(),
        db.url.clone(),
    ];
    let flags = topics.flags();
    args.extend(flags.iter().map(|f| {
        if *f == topics.predictions {
            "no-such-topic".to_owned()
        } else {
            f.clone()
        }
    }));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = txflow(dir.path(), &args);
    run.assert_code(1);
    assert!(
        run.stderr.contains("no-such-topic") && run.stderr.contains("txflow topics create"),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("transactions", "").await, 0);
}
