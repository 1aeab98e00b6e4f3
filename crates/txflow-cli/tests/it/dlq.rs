//! `txflow dlq` against the real broker and database: letters listed and
//! shown, a dry run that changes nothing, replays that store what failed
//! once its cause is fixed, and records that keep failing stopped at their
//! attempt cap.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::harness::{Database, txflow, unique};
use crate::serve::Serve;
use crate::servers::free_port;
use crate::stream::{Member, Topics, wait_for};

/// `txflow dlq ARGS` on the test's topics; its JSON output.
fn dlq(topics: &Topics, args: &[&str]) -> serde_json::Value {
    let out = dlq_text(topics, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `txflow dlq ARGS` on the test's topics; its text output.
fn dlq_text(topics: &Topics, args: &[&str]) -> String {
    let mut all: Vec<String> = vec!["dlq".into()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.extend(topics.flags());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let run = txflow(&std::env::temp_dir(), &all);
    run.assert_code(0);
    run.stdout
}

/// Waits until the dead-letter topic holds `n` letters, as `txflow dlq
/// list` counts them.
async fn wait_for_letters(topics: &Topics, n: i64, member: &Member) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = dlq(topics, &["list", "--json"])["total"]
            .as_i64()
            .expect("a count");
        if total >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{total} letters, {n} expected\n{}",
            member.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn decode_failures_replayed_come_back_with_attempt_two_and_stop_at_the_cap() {
    let topics = Topics::create();
    let db = Database::create().await;
    let member = Member::start(&topics, &db, &unique("g"), "m1", &[]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &topics.brokers)
        .create()
        .expect("a producer");
    for key in ["p1", "p2", "p3"] {
        producer
            .send(
                FutureRecord::to(&topics.transactions)
                    .key(key)
                    .payload("this is not JSON"),
                Duration::from_secs(10),
            )
            .await
            .expect("sent");
    }
    topics.produce(2);
    wait_for_letters(&topics, 3, &member).await;
    wait_for(&db, "transactions", 2, Duration::from_secs(30)).await;

    let counts = dlq(&topics, &["list", "--json"]);
    assert_eq!(counts["total"], 3, "{counts}");
    assert_eq!(counts["by_class"][0]["class"], "decode", "{counts}");
    assert_eq!(counts["by_class"][0]["rule"], "event_format", "{counts}");
    let letters = dlq(&topics, &["show", "--json", "--class", "decode"]);
    let letters = letters.as_array().expect("letters");
    assert_eq!(letters.len(), 3);
    assert!(
        letters
            .iter()
            .all(|l| l["attempts"] == 1 && l["payload"] == "this is not JSON"),
        "{letters:?}"
    );
    assert_eq!(
        dlq(&topics, &["show", "--json", "--id", "p2"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // A dry run says what it would do and does nothing: the topic's size
    // is the same before and after.
    let before = topics.count(&topics.transactions);
    let dry = dlq_text(&topics, &["replay", "--class", "decode", "--dry-run"]);
    assert!(dry.contains("3 letter(s) would be replayed"), "{dry}");
    assert_eq!(topics.count(&topics.transactions), before);
    assert_eq!(db.count("replays", "").await, 0);

    // Replayed, they fail again: back with attempt 2 and the letter they
    // came from.
    let out = dlq_text(
        &topics,
        &["replay", "--class", "decode", "--database-url", &db.url],
    );
    assert!(out.contains("3 letter(s) replayed"), "{out}");
    wait_for_letters(&topics, 6, &member).await;
    let replayed = dlq(&topics, &["show", "--json"]);
    let replayed: Vec<&serde_json::Value> = replayed
        .as_array()
        .expect("letters")
        .iter()
        .filter(|l| !l["replay_of"].is_null())
        .collect();
    assert_eq!(replayed.len(), 3, "{replayed:?}");
    assert!(replayed.iter().all(|l| l["attempts"] == 2), "{replayed:?}");
    assert_eq!(db.count("replays", "attempt = 2").await, 3);

    // With a cap of two attempts, the letters of attempt 2 are left out:
    // no record is ever replayed a third time.
    let out = dlq_text(
        &topics,
        &[
            "replay",
            "--class",
            "decode",
            "--max-attempts",
            "2",
            "--database-url",
            &db.url,
        ],
    );
    assert!(out.contains("3 left out at their attempt cap"), "{out}");
    wait_for_letters(&topics, 9, &member).await;
    let all = dlq(&topics, &["list", "--json"]);
    let attempts: Vec<i64> = all["by_attempts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|a| a["attempts"].as_i64().expect("a number"))
        .collect();
    assert_eq!(attempts.iter().max(), Some(&2), "{all}");
    assert_eq!(db.count("transactions", "").await, 2);
    member.stop();
}

#[tokio::test]
async fn classification_failures_are_replayed_once_the_service_is_fixed_and_stored_once() {
    let topics = Topics::create();
    let db = Database::create().await;
    // A service that refuses every request of more than one item (413).
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    // Stopped when dropped, also when the test fails.
    let broken = Serve::start_on_with(port, &["--max-batch", "1"]).await;
    let url = format!("http://{address}");
    let member = Member::start(&topics, &db, &unique("g"), "m1", &["--classifier", &url]);
    topics.produce(40);
    wait_for_letters(&topics, 1, &member).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let counts = dlq(&topics, &["list", "--json", "--class", "classification"]);
        let stored = db.count("transactions", "").await;
        let total = counts["total"].as_i64().expect("a count");
        if stored == 40 && total > 0 {
            break total;
        }
        assert!(Instant::now() < deadline, "{counts}\n{}", member.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let predicted = db.count("predictions", "").await;
    assert_eq!(
        predicted + refused,
        40,
        "each record predicted or dead-lettered"
    );
    drop(broken);

    // The service is fixed (same address); the refused records replayed.
    let _fixed = Serve::start_on(port).await;
    let out = dlq_text(
        &topics,
        &[
            "replay",
            "--class",
            "classification",
            "--database-url",
            &db.url,
        ],
    );
    assert!(
        out.contains(&format!("{refused} letter(s) replayed")),
        "{out}"
    );
    wait_for(&db, "predictions", 40, Duration::from_secs(60)).await;
    assert_eq!(
        db.count("transactions", "").await,
        40,
        "no transaction twice"
    );
    let replays = dlq(&topics, &["replays", "--json", "--database-url", &db.url]);
    let replays = replays.as_array().expect("replays");
    assert_eq!(replays.len() as i64, refused);
    assert!(
        replays.iter().all(|r| r["outcome"] == "stored"),
        "{replays:?}"
    );
    member.stop();
}

#[tokio::test]
async fn rejected_batch_rows_are_listed_by_rule_from_either_database() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("mixed.csv");
    std::fs::write(&file, crate::MIXED).expect("writing the file");
    let file = file.to_str().expect("UTF-8");
    let sqlite = format!("sqlite://{}", dir.path().join("t.db").display());
    for url in [db.url.as_str(), sqlite.as_str()] {
        txflow(
            dir.path(),
            &["batch", file, "--database-url", url, "--run-id", "mixed-1"],
        )
        .assert_code(0);
        let list = |extra: &[&str]| -> serde_json::Value {
            let mut args = vec!["runs", "rejected", "--json", "--database-url", url];
            args.extend_from_slice(extra);
            let run = txflow(dir.path(), &args);
            run.assert_code(0);
            serde_json::from_str(&run.stdout).expect("JSON")
        };
        let all = list(&[]);
        assert_eq!(all["total"], 7, "{url}: {all}");
        assert_eq!(all["rows"].as_array().map(Vec::len), Some(7));
        assert!(
            all["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .all(|r| r["run_id"] == "mixed-1")
        );
        let amounts = list(&["--rule", "amount_format", "--limit", "1"]);
        let rule_total = amounts["total"].as_i64().expect("a count");
        assert!(rule_total >= 1, "{amounts}");
        assert_eq!(amounts["rows"].as_array().map(Vec::len), Some(1));
        assert_eq!(amounts["rows"][0]["rule"], "amount_format");
        assert_eq!(list(&["--run", "another"])["total"], 0);
        // Its old name still answers, saying where it moved.
        let old = txflow(
            dir.path(),
            &["dlq", "rejected", "--json", "--database-url", url],
        );
        old.assert_code(0);
        assert!(
            old.stderr.contains("txflow runs rejected"),
            "{}",
            old.stderr
        );
        let old: serde_json::Value = serde_json::from_str(&old.stdout).expect("JSON");
        assert_eq!(old["total"], 7);
    }
}
