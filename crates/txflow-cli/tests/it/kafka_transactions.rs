//! `txflow consume --transactions` on Apache Kafka: each flush's predictions
//! in a Kafka transaction committed once the database has the rows. A
//! member aborted (the failpoint, as `kill -9` would stop it) after
//! publishing a flush and before storing it, or after storing it and before
//! the Kafka commit; the next member with the same `--member-id` takes
//! over. A `read_committed` reader (as the sinks read) sees exactly the
//! stored predictions, each once.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};

use crate::harness::{Database, count_at, unique, wait_count_at};
use crate::stream::{Member, Topics};

const EVENTS: i64 = 3_000;
const STORED: &str = "SELECT count(*) FROM predictions";
const UNPUBLISHED: &str = "SELECT count(*) FROM stream_offsets WHERE unpublished_from IS NOT NULL";
const TRANSACTIONAL: [&str; 3] = ["--transactions", "--member-id", "tx-1"];

/// The distinct keys (transaction ids) of these records, and how many
/// records there were.
fn keys(records: &[OwnedMessage]) -> (usize, HashSet<Vec<u8>>) {
    let keys = records
        .iter()
        .map(|r| r.key().expect("a keyed prediction").to_vec())
        .collect();
    (records.len(), keys)
}

/// Starts the transactional member of `group`, aborted at `failpoint`, and
/// waits for the abort.
fn aborted_member(topics: &Topics, db: &Database, group: &str, failpoint: &str) -> Member {
    let mut first = Member::start_with(
        topics,
        &db.url,
        group,
        None,
        &TRANSACTIONAL,
        &[("TXFLOW_FAILPOINT_CONSUME_ABORT", failpoint)],
    );
    let status = first.wait(Duration::from_secs(60));
    assert!(!status.success(), "{status:?}\n{}", first.log());
    assert!(
        first.log().contains("TXFLOW_FAILPOINT_CONSUME_ABORT"),
        "{}",
        first.log()
    );
    first
}

/// The next member (same `--member-id`: its producer aborts what the first
/// left open) stores every event; stopped, it leaves no mark behind, and a
/// `read_committed` reader sees every prediction exactly once.
async fn the_next_member_completes_it_exactly_once(topics: &Topics, db: &Database, group: &str) {
    let next = Member::start_on(topics, &db.url, group, None, &TRANSACTIONAL);
    wait_count_at(&db.url, STORED, EVENTS, Duration::from_secs(60), || {
        next.log()
    })
    .await;
    next.stop();
    assert_eq!(
        count_at(&db.url, "SELECT count(*) FROM transactions").await,
        EVENTS
    );
    assert_eq!(count_at(&db.url, STORED).await, EVENTS);
    assert_eq!(count_at(&db.url, UNPUBLISHED).await, 0, "marks left");
    let (records, distinct) = keys(&topics.read_all(&topics.predictions));
    assert_eq!(distinct.len() as i64, EVENTS, "distinct predictions");
    assert_eq!(records as i64, EVENTS, "predictions read_committed");
}

#[tokio::test]
async fn a_member_stopped_after_publishing_a_flush_and_before_storing_it_shows_readers_nothing_of_it()
 {
    let topics = Topics::create();
    let db = Database::create().await;
    let group = unique("g");
    topics.produce(EVENTS as u64);
    let first = aborted_member(&topics, &db, &group, "published:3");
    let stored = count_at(&db.url, STORED).await;
    assert!(
        0 < stored && stored < EVENTS,
        "{stored} stored\n{}",
        first.log()
    );

    // The log holds the third flush's predictions, in a transaction left
    // open: read_committed readers see only the stored ones.
    let (committed, distinct) = keys(&topics.read_all(&topics.predictions));
    assert_eq!(committed as i64, stored, "predictions read_committed");
    assert_eq!(distinct.len() as i64, stored);
    let (uncommitted, _) = keys(&topics.read_all_as(&topics.predictions, "read_uncommitted"));
    assert!(
        uncommitted > committed,
        "the aborted flush published nothing? {uncommitted} records"
    );

    the_next_member_completes_it_exactly_once(&topics, &db, &group).await;
}

#[tokio::test]
async fn a_member_stopped_after_storing_a_flush_and_before_committing_it_has_it_published_by_the_next()
 {
    let topics = Topics::create();
    let db = Database::create().await;
    let group = unique("g");
    topics.produce(EVENTS as u64);
    let first = aborted_member(&topics, &db, &group, "stored:2");

    // The second flush is stored, its predictions are not committed: its
    // partitions are marked.
    let stored = count_at(&db.url, STORED).await;
    assert!(
        count_at(&db.url, UNPUBLISHED).await > 0,
        "no mark\n{}",
        first.log()
    );
    let (committed, _) = keys(&topics.read_all(&topics.predictions));
    assert!(
        (committed as i64) < stored,
        "{committed} predictions read_committed, {stored} stored"
    );

    // The next member resumes at the marks and publishes them again.
    the_next_member_completes_it_exactly_once(&topics, &db, &group).await;
}
