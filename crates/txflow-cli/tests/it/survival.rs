//! The stream survives its dependencies: members killed with -9 and
//! restarted while producers publish, PostgreSQL restarted or stopped under
//! a running member, offsets that cannot be read. Real servers and
//! processes, run as an operator runs them (default member names).

use std::time::{Duration, Instant};

use crate::harness::{Database, count_at, unique, wait_count_at};
use crate::servers::{PrivateKafka, PrivatePostgres, free_port};
use crate::stream::{Member, Topics};

/// Waits until `sql` answers at least `n`; returns how long it took.
async fn wait_count(url: &str, sql: &str, n: i64, within: Duration) -> Duration {
    wait_count_at(url, sql, n, within, String::new).await
}

/// [`wait_count`], showing the members' logs if it times out.
async fn wait_count_or(
    url: &str,
    sql: &str,
    n: i64,
    within: Duration,
    members: &[&Member],
) -> Duration {
    wait_count_at(url, sql, n, within, || {
        members
            .iter()
            .map(|m| m.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    })
    .await
}

const TRANSACTIONS: &str = "SELECT count(*) FROM transactions";
const DISTINCT: &str = "SELECT count(DISTINCT id) FROM transactions";
const PREDICTIONS: &str = "SELECT count(*) FROM predictions";
/// The invariant the schema no longer checks (migration 5).
const ORPHANS: &str = "SELECT count(*) FROM predictions p \
     WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = p.transaction_id)";
const OFFSETS: &str = "SELECT coalesce(sum(next_offset), 0)::bigint FROM stream_offsets";

/// Every event stored once, with its prediction, offsets adding up, and
/// nothing dead-lettered.
async fn assert_exactly_once(url: &str, topics: &Topics, n: i64) {
    assert_eq!(count_at(url, TRANSACTIONS).await, n);
    assert_eq!(count_at(url, DISTINCT).await, n);
    assert_eq!(count_at(url, PREDICTIONS).await, n);
    assert_eq!(count_at(url, OFFSETS).await, n);
    assert_eq!(
        count_at(url, ORPHANS).await,
        0,
        "predictions without a transaction"
    );
    assert_eq!(topics.count(&topics.dead_letters), 0, "dead letters");
}

#[tokio::test]
async fn a_member_killed_while_producers_publish_consumes_again_within_seconds_and_writes_every_event_once()
 {
    let topics = Topics::create();
    let db = Database::create().await;
    let group = unique("g");
    let first = Member::start_on(&topics, &db.url, &group, None, &[]);
    let producer = topics.producer(20_000, 4_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.kill_9();
    let at_kill = count_at(&db.url, TRANSACTIONS).await;
    let restarted = Member::start_on(&topics, &db.url, &group, None, &[]);
    // Consuming again: rows grow (the producer still publishes).
    let back_after = wait_count(&db.url, TRANSACTIONS, at_kill + 1, Duration::from_secs(30)).await;
    producer.wait();
    wait_count(&db.url, PREDICTIONS, 20_000, Duration::from_secs(120)).await;
    restarted.stop();
    assert!(at_kill < 20_000, "the kill came too late ({at_kill} rows)");
    assert_exactly_once(&db.url, &topics, 20_000).await;
    // The default session timeout is 10 s: the broker evicts the dead member
    // (and hands out its partitions) no sooner. The restarted member must
    // consume right after that (measured: 10.3-10.4 s from its start; 12.3 s
    // with the 3 s rejoin grace of before), never sit idle.
    assert!(
        back_after < Duration::from_secs(13),
        "consuming again only after {back_after:?}"
    );
    eprintln!("killed at {at_kill} rows; the restarted member wrote again after {back_after:?}");
}

#[tokio::test]
async fn three_members_one_killed_the_others_take_its_partitions_and_write_every_event_once() {
    let topics = Topics::create();
    let db = Database::create().await;
    let group = unique("g");
    let members: Vec<Member> = (0..3)
        .map(|_| Member::start_on(&topics, &db.url, &group, None, &[]))
        .collect();
    // Let the group settle before the events arrive.
    Member::wait_settled(
        &members.iter().collect::<Vec<_>>(),
        3,
        Duration::from_secs(60),
    );
    let producer = topics.producer(30_000, 3_000);
    wait_count(&db.url, TRANSACTIONS, 3_000, Duration::from_secs(60)).await;
    let mut members = members.into_iter();
    let victim = members.next().expect("three members");
    victim.kill_9();
    producer.wait();
    wait_count(&db.url, PREDICTIONS, 30_000, Duration::from_secs(120)).await;
    for m in members {
        m.stop();
    }
    assert_exactly_once(&db.url, &topics, 30_000).await;
}

/// `/health` of a member: status code and body.
async fn health(listen: &str) -> (u16, String) {
    let answer = crate::harness::get(format!("http://{listen}/health"))
        .await
        .expect("/health");
    let status = answer.status().as_u16();
    (status, answer.text().await.expect("a body"))
}

async fn metrics(listen: &str) -> String {
    crate::harness::get(format!("http://{listen}/metrics"))
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("the metrics")
}

/// A member writing to a PostgreSQL server of the test's own, serving its
/// `/health` and `/metrics` on the address returned.
async fn member_on_private_postgres() -> (PrivatePostgres, String, Topics, String, Member) {
    let pg = PrivatePostgres::start();
    let url = private_database(&pg).await;
    let topics = Topics::create();
    let listen = format!("127.0.0.1:{}", free_port());
    let member = Member::start_on(
        &topics,
        &url,
        &unique("g"),
        None,
        &["--metrics-listen", &listen],
    );
    (pg, url, topics, listen, member)
}

/// A database of its own on a PostgreSQL server of its own.
async fn private_database(pg: &PrivatePostgres) -> String {
    let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .expect("the private server");
    tokio::spawn(connection);
    client
        .batch_execute("CREATE DATABASE stream")
        .await
        .expect("a database");
    pg.url.replace("/postgres", "/stream")
}

#[tokio::test]
async fn postgres_restarted_mid_stream_the_member_reconnects_and_writes_every_event_once() {
    let (pg, url, topics, listen, mut member) = member_on_private_postgres().await;
    let producer = topics.producer(20_000, 2_000);
    wait_count(&url, TRANSACTIONS, 2_000, Duration::from_secs(60)).await;
    pg.restart();
    assert!(member.is_running(), "the member stopped:\n{}", member.log());
    producer.wait();
    wait_count(&url, PREDICTIONS, 20_000, Duration::from_secs(120)).await;
    assert_eq!(health(&listen).await.0, 200);
    let text = metrics(&listen).await;
    assert!(
        text.contains("txflow_database_outages_total"),
        "no outage counted:\n{text}"
    );
    member.stop();
    assert_exactly_once(&url, &topics, 20_000).await;
}

#[tokio::test]
async fn postgres_stopped_30_seconds_the_member_pauses_reports_it_and_resumes_losing_nothing() {
    let (pg, url, topics, listen, mut member) = member_on_private_postgres().await;
    let producer = topics.producer(20_000, 1_000);
    wait_count(&url, TRANSACTIONS, 2_000, Duration::from_secs(60)).await;
    pg.stop();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = health(&listen).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""database":"down""#), "{body}");
    assert!(
        metrics(&listen).await.contains("txflow_database_up 0"),
        "the database is down"
    );
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed())).await;
    assert!(member.is_running(), "the member stopped:\n{}", member.log());
    pg.start_again();
    producer.wait();
    wait_count(&url, PREDICTIONS, 20_000, Duration::from_secs(120)).await;
    let (status, body) = health(&listen).await;
    assert_eq!(status, 200, "{body}");
    member.stop();
    assert_exactly_once(&url, &topics, 20_000).await;
}

#[tokio::test]
async fn offsets_that_cannot_be_read_stop_the_member_with_an_error_instead_of_a_stall() {
    let topics = Topics::create();
    let db = Database::create().await;
    crate::harness::txflow(
        &std::env::temp_dir(),
        &["migrate", "--database-url", &db.url],
    )
    .assert_code(0);
    db.client
        .batch_execute("ALTER TABLE stream_offsets RENAME TO stream_offsets_away")
        .await
        .expect("hiding the offsets");
    let mut member = Member::start_on(
        &topics,
        &db.url,
        &unique("g"),
        None,
        &["--offsets-timeout", "2s"],
    );
    let status = member.wait(Duration::from_secs(60));
    let log = member.log();
    assert!(!status.success(), "the member should fail:\n{log}");
    assert!(log.contains("stored offsets"), "{log}");
    assert!(log.contains("stream_offsets"), "the cause is named:\n{log}");
    assert_eq!(db.count("transactions", "").await, 0);
}

#[tokio::test]
async fn the_broker_restarted_mid_stream_producer_and_member_reconnect_and_every_event_is_stored_once()
 {
    let mut broker = PrivateKafka::start();
    let topics = Topics::create_on(broker.brokers());
    let db = Database::create().await;
    let mut member = Member::start_on(&topics, &db.url, &unique("g"), None, &[]);
    let producer = topics.producer(1_500, 100);
    // (Failed once in 60 s with nothing stored, the member assigned: the
    // producer's log says what it saw.)
    wait_count_at(&db.url, TRANSACTIONS, 300, Duration::from_secs(60), || {
        format!("{}\n--- the producer:\n{}", member.log(), producer.log())
    })
    .await;
    broker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.start_again();
    producer.wait();
    wait_count_or(
        &db.url,
        PREDICTIONS,
        1_500,
        Duration::from_secs(180),
        &[&member],
    )
    .await;
    assert!(member.is_running(), "{}", member.log());
    member.stop();
    assert_exactly_once(&db.url, &topics, 1_500).await;
}

#[tokio::test]
async fn sigterm_while_the_database_is_away_exits_within_the_shutdown_timeout_and_loses_nothing() {
    let pg = PrivatePostgres::start();
    let url = private_database(&pg).await;
    let topics = Topics::create();
    let group = unique("g");
    let member = Member::start_on(&topics, &url, &group, None, &["--shutdown-timeout", "2s"]);
    let producer = topics.producer(3_000, 1_000);
    wait_count_or(&url, TRANSACTIONS, 500, Duration::from_secs(60), &[&member]).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    member.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
    producer.wait();
    pg.start_again();
    // What the stopped member could not store, the next one replays.
    let next = Member::start_on(&topics, &url, &group, None, &[]);
    wait_count_or(&url, PREDICTIONS, 3_000, Duration::from_secs(60), &[&next]).await;
    next.stop();
    assert_exactly_once(&url, &topics, 3_000).await;
}

#[tokio::test]
async fn a_static_member_killed_and_restarted_gets_its_partitions_back_without_waiting_for_its_session()
 {
    let topics = Topics::create();
    let db = Database::create().await;
    let group = unique("g");
    // A session long enough that waiting for it would show: a dynamic
    // member's replacement waits for the dead one's session to end before
    // the group rebalances.
    let static_member = ["--member-id", "static-1", "--session-timeout", "30s"];
    let member = Member::start_on(&topics, &db.url, &group, None, &static_member);
    topics.produce(1_000);
    wait_count_or(
        &db.url,
        PREDICTIONS,
        1_000,
        Duration::from_secs(60),
        &[&member],
    )
    .await;
    member.kill_9();
    let restarted = Instant::now();
    let member = Member::start_on(&topics, &db.url, &group, None, &static_member);
    topics.produce(1_000);
    wait_count_or(
        &db.url,
        PREDICTIONS,
        2_000,
        Duration::from_secs(60),
        &[&member],
    )
    .await;
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the restarted static member took {took:?} to store the next 1,000 (session 30 s)\n{}",
        member.log()
    );
    member.stop();
    assert_exactly_once(&db.url, &topics, 2_000).await;
}
