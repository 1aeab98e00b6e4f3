//! The store ports' contracts (`Sink` with `OffsetStore`, and `RunLedger`),
//! run against each adapter: PostgreSQL (real server) and SQLite.

use std::sync::Arc;

use chrono::Utc;
use txflow_core::RejectionQuery;
use txflow_core::transaction::DecimalMark;
use txflow_core::validation::{RejectedRecord, Rule};
use txflow_core::{
    Amount, Batch, Category, Checkpoint, ClassifyFailure, Column, Counts, ErrorBudget,
    FailureClass, FileOutcome, Label, LabelError, LabelSource, Lineage, OffsetStore, Position,
    ProcessingType, Progress, QueueFilter, Ranked, ReferenceModel, ReviewRequest, ReviewStore,
    RunId, RunLedger, RunStatus, RunSummary, Side, Sink, Transaction, TransactionId,
    TransactionParts, Unclassified,
};

use txflow_core::registry::{ModelKind, ModelRegistry, Registration, Selection};
use txflow_core::replay::{Replay, ReplayLedger};

use crate::harness::Database;

fn batch() -> Batch {
    let transactions: Vec<Transaction> = (0..3)
        .map(|i| {
            Transaction::from(TransactionParts {
                id: TransactionId::from_uuid(uuid::Uuid::new_v4()),
                source_id: i.to_string(),
                description: "Coffee".into(),
                amount: Amount::parse("-2,50", DecimalMark::Comma).expect("an amount"),
                timestamp: Utc::now(),
                merchant: None,
                operation_type: "card".into(),
                side: Side::Debit,
            })
        })
        .collect();
    let positions: Vec<Position> = (0..3)
        .map(|i| Position {
            line: i + 2,
            offset: i * 40,
        })
        .collect();
    Batch {
        lineage: Lineage {
            run_id: RunId::parse("contract").expect("a run id"),
            source: Arc::from("file:///contract.csv"),
            processing_type: ProcessingType::Batch,
        },
        batch_id: uuid::Uuid::new_v4(),
        predictions: transactions[..2]
            .iter()
            .map(|t| ReferenceModel::predict(t.id()))
            .collect(),
        unclassified: vec![Unclassified {
            transaction_id: transactions[2].id(),
            position: positions[2],
            failure: ClassifyFailure {
                class: FailureClass::InvalidAnswer,
                message: "unknown category \"Pets\"".into(),
            },
        }],
        transactions,
        positions,
        rejected: Vec::new(),
        reviews: Vec::new(),
        checkpoint: None,
        run_tally: false,
    }
}

/// A batch whose first prediction is queued for review, as `route` makes
/// it with `--review-below`.
fn batch_with_review() -> Batch {
    let mut b = batch();
    let p = b.predictions[0].clone();
    b.reviews = vec![ReviewRequest {
        transaction_id: p.transaction_id,
        model_version: p.model_version.clone(),
        category: p.category.clone(),
        confidence: Some(0.4),
        top: vec![
            Ranked {
                category: p.category.clone(),
                confidence: 0.4,
            },
            Ranked {
                category: Category::new("Travel").expect("a category"),
                confidence: 0.3,
            },
        ],
        labels: Some(ReferenceModel::labels().clone()),
    }];
    b
}

/// The review queue and labels: queued in the batch's transaction (once),
/// listed least confident first, a label checked against the queueing
/// model's set, winning in the views, taken back, exported.
async fn review_contract<S: Sink + ReviewStore, F: AsyncFn(&str) -> i64>(store: &S, count: F) {
    let b = batch_with_review();
    let id = b.reviews[0].transaction_id;
    let predicted = b.reviews[0].category.clone();
    assert_eq!(
        store.write_batch(b.clone()).await.expect("a write").queued,
        1
    );
    assert_eq!(store.write_batch(b).await.expect("again").queued, 0);
    let all = QueueFilter {
        limit: 10,
        ..QueueFilter::default()
    };
    let queue = store.queue(&all).await.expect("the queue");
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0].transaction_id, id);
    assert_eq!(queue[0].description, "Coffee");
    assert_eq!(queue[0].amount.cents(), -250);
    assert_eq!(queue[0].confidence, Some(0.4));
    assert_eq!(queue[0].top.len(), 2);
    assert_eq!(queue[0].top[1].category.as_str(), "Travel");
    assert_eq!(queue[0].labels.as_ref().map(Vec::len), Some(15));
    let other_model = QueueFilter {
        model_version: Some("other".into()),
        ..all.clone()
    };
    assert!(
        store
            .queue(&other_model)
            .await
            .expect("filtered")
            .is_empty()
    );

    // A label outside the model's set, or for no transaction, is refused.
    let label = |category: &str, transaction_id| Label {
        transaction_id,
        category: Category::new(category).expect("a category"),
        labeled_by: "ana".into(),
        source: LabelSource::Review,
    };
    let refused = store.label(&label("Groceries", id)).await;
    assert!(
        matches!(refused, Err(LabelError::NotInLabelSet { .. })),
        "{refused:?}"
    );
    let unknown = TransactionId::from_uuid(uuid::Uuid::new_v4());
    let refused = store.label(&label("Travel", unknown)).await;
    assert!(
        matches!(refused, Err(LabelError::UnknownTransaction(_))),
        "{refused:?}"
    );

    // The label wins in the views and closes the item.
    let chosen = if predicted.as_str() == "Travel" {
        "Rent"
    } else {
        "Travel"
    };
    store.label(&label(chosen, id)).await.expect("a label");
    assert_eq!(
        store.progress().await.expect("progress"),
        Progress {
            labeled: 1,
            pending: 0
        }
    );
    assert!(store.queue(&all).await.expect("the queue").is_empty());
    let shown = format!(
        "SELECT count(*) FROM transactions_with_latest_prediction WHERE id = '{id}'          AND category = '{chosen}' AND confidence IS NULL AND labeled_by = 'ana'"
    );
    assert_eq!(count(&shown).await, 1);
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM category_totals WHERE category = '{chosen}' AND transactions >= 1"
        ))
        .await,
        1
    );
    let labeled = store.labeled(None).await.expect("the labels");
    assert_eq!(labeled.len(), 1);
    assert_eq!(
        (
            labeled[0].category.as_str(),
            labeled[0].description.as_str()
        ),
        (chosen, "Coffee")
    );
    assert!(
        store
            .labeled(Some(Utc::now() + chrono::Duration::hours(1)))
            .await
            .expect("no labels")
            .is_empty()
    );

    // Taken back: the model's prediction again, the item pending again.
    assert!(store.unlabel(id).await.expect("undo"));
    assert!(!store.unlabel(id).await.expect("undo twice"));
    assert_eq!(
        store.progress().await.expect("progress"),
        Progress {
            labeled: 0,
            pending: 1
        }
    );
    let back = format!(
        "SELECT count(*) FROM transactions_with_latest_prediction WHERE id = '{id}'          AND category = '{predicted}' AND confidence = 1 AND labeled_by IS NULL"
    );
    assert_eq!(count(&back).await, 1);

    // Another model queues the same transaction: its item replaces the
    // first in the queue, which still holds one item for it.
    let mut again = batch_with_review();
    let mut p = again.predictions[0].clone();
    p.transaction_id = id;
    p.model_version = "next-1".into();
    // Only the new prediction and its item: the transaction is stored.
    again.transactions.clear();
    again.positions.clear();
    again.unclassified.clear();
    again.predictions = vec![p];
    again.reviews[0].transaction_id = id;
    again.reviews[0].model_version = "next-1".into();
    assert_eq!(store.write_batch(again).await.expect("a write").queued, 1);
    let queue = store.queue(&all).await.expect("the queue");
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0].model_version, "next-1");
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM review_queue WHERE transaction_id = '{id}' AND status = 'superseded'"
        ))
        .await,
        1
    );
}

/// Writes a batch with one unclassified transaction twice; `count` runs a
/// `SELECT count(*)`.
async fn contract<S: Sink + OffsetStore, F: AsyncFn(&str) -> i64>(sink: &S, count: F) {
    let once = batch();
    // A batch that overlaps what is stored (a resumed run): its first
    // transaction and prediction are `once`'s.
    let mut overlapping = batch();
    overlapping.transactions[0] = once.transactions[0].clone();
    overlapping.predictions[0] = once.predictions[0].clone();
    let first = sink
        .write_batch(once.clone())
        .await
        .expect("the first write");
    assert_eq!(
        (first.transactions, first.predictions, first.unclassified),
        (3, 2, 1)
    );
    let again = sink.write_batch(once).await.expect("the second write");
    assert_eq!(
        (again.transactions, again.predictions, again.unclassified),
        (0, 0, 0)
    );
    assert_eq!(count("SELECT count(*) FROM transactions").await, 3);
    assert_eq!(count("SELECT count(*) FROM predictions").await, 2);
    assert_eq!(
        count("SELECT count(*) FROM unprocessed_transactions").await,
        1
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM classification_failures f JOIN unprocessed_transactions u \
             ON u.id = f.transaction_id WHERE f.failure_class = 'invalid_answer' AND f.source_line = 4"
        )
        .await,
        1
    );
    let overlap = sink
        .write_batch(overlapping)
        .await
        .expect("the overlapping write");
    assert_eq!(
        (
            overlap.transactions,
            overlap.predictions,
            overlap.unclassified
        ),
        (2, 1, 1)
    );
    assert_eq!(count("SELECT count(*) FROM transactions").await, 5);
    assert_eq!(count("SELECT count(*) FROM predictions").await, 3);

    // A stream's checkpoint is stored with its batch and never goes back.
    let checkpoint = |next_offset| Checkpoint {
        group: "g".into(),
        topic: "transactions".into(),
        partition: 2,
        next_offset,
        unpublished_from: None,
    };
    let mut ahead = batch();
    ahead.checkpoint = Some(checkpoint(10));
    sink.write_batch(ahead)
        .await
        .expect("a batch with a checkpoint");
    let mut behind = batch();
    behind.checkpoint = Some(checkpoint(5));
    sink.write_batch(behind).await.expect("an older checkpoint");
    let stored = sink
        .stored_offsets("g", "transactions")
        .await
        .expect("offsets");
    assert_eq!(stored, [(2, 10)]);
    assert!(
        sink.stored_offsets("other", "transactions")
            .await
            .expect("offsets")
            .is_empty()
    );

    // Predictions in a Kafka transaction not seen committed: the member
    // resumes at the batch's first offset until they are marked published;
    // an older checkpoint changes neither.
    let mut pending = batch();
    pending.checkpoint = Some(Checkpoint {
        unpublished_from: Some(12),
        ..checkpoint(15)
    });
    sink.write_batch(pending)
        .await
        .expect("a pending checkpoint");
    let mut behind = batch();
    behind.checkpoint = Some(checkpoint(13));
    sink.write_batch(behind).await.expect("an older checkpoint");
    let resume = sink.stored_offsets("g", "transactions").await;
    assert_eq!(resume.expect("offsets"), [(2, 12)]);
    sink.published("g", "transactions", &[2])
        .await
        .expect("marked published");
    let resume = sink.stored_offsets("g", "transactions").await;
    assert_eq!(resume.expect("offsets"), [(2, 15)]);

    // A flush's partitions in one write: each batch's rows and checkpoint;
    // one of them overlapping what is stored takes them all through the
    // staging path, and only what is new is added.
    let part = |partition, next_offset| {
        let mut b = batch();
        b.checkpoint = Some(Checkpoint {
            group: "flush".into(),
            partition,
            ..checkpoint(next_offset)
        });
        b
    };
    let before = count("SELECT count(*) FROM transactions").await;
    let first = part(0, 7);
    let both = sink
        .write_batches(vec![first.clone(), part(1, 9)])
        .await
        .expect("a flush of two partitions");
    assert_eq!(
        (both.transactions, both.predictions, both.unclassified),
        (6, 4, 2)
    );
    let mut overlapping = part(1, 12);
    overlapping.transactions[0] = first.transactions[0].clone();
    overlapping.predictions[0] = first.predictions[0].clone();
    let overlap = sink
        .write_batches(vec![part(0, 8), overlapping])
        .await
        .expect("a flush overlapping what is stored");
    assert_eq!(
        (
            overlap.transactions,
            overlap.predictions,
            overlap.unclassified
        ),
        (5, 3, 2)
    );
    assert_eq!(
        count("SELECT count(*) FROM transactions").await,
        before + 11
    );
    let mut stored = sink.stored_offsets("flush", "transactions").await;
    stored.as_mut().map(|s| s.sort()).expect("offsets");
    assert_eq!(stored.expect("offsets"), [(0, 8), (1, 12)]);
}

/// A run started, one file done and one failed, finished: the ledger says
/// which files are done and what the run did; recording again replaces.
async fn ledger<L: RunLedger>(ledger: &L) {
    let run_id = RunId::parse("ledger-1").expect("a run id");
    let mut run = RunSummary::start(run_id.clone(), ProcessingType::Batch, Utc::now());
    ledger.start_run(&run).await.expect("the run's start");
    let counts = Counts {
        read: 10,
        valid: 9,
        invalid: 1,
        written: 9,
        files: 1,
        ..Counts::default()
    };
    let done = FileOutcome {
        location: "file:///a.csv".into(),
        done: true,
        counts,
        error: None,
    };
    let failed = FileOutcome {
        location: "file:///b.csv".into(),
        done: false,
        counts: Counts::default(),
        error: Some("the object went away".into()),
    };
    for file in [&done, &failed, &done] {
        ledger.record_file(&run_id, file).await.expect("a file");
    }
    let asked = ["file:///a.csv".to_owned(), "file:///b.csv".to_owned()];
    let done_files = ledger.done_files(&asked).await.expect("the done files");
    assert_eq!(
        done_files.into_iter().collect::<Vec<_>>(),
        ["file:///a.csv"]
    );

    run.counts = Counts {
        files_failed: 1,
        ..counts
    };
    run.finish(Utc::now(), None, ErrorBudget::UNLIMITED);
    ledger.finish_run(&run).await.expect("the run's end");
    let runs = ledger.runs("ledger-").await.expect("the runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let record = &runs[0];
    assert_eq!(record.run_id, "ledger-1");
    assert_eq!(record.status, run.status);
    assert_eq!(
        (
            record.files_failed,
            record.rows_read,
            record.rows_invalid,
            record.rows_written
        ),
        (1, 10, 1, 9)
    );
    assert!(ledger.runs("other").await.expect("no runs").is_empty());
    // A prefix is taken literally: `_` and `%` are no wildcards.
    assert!(ledger.runs("ledger_").await.expect("no runs").is_empty());
    assert!(ledger.runs("%").await.expect("no runs").is_empty());
}

/// A batch of a run that asks for it adds its rows to the run's ledger
/// row in its own transaction, so a run killed before recording its end
/// still says what it committed; a rerun of the batch adds what it read but
/// writes nothing new; a batch that does not ask adds nothing; the run's
/// end records its totals.
async fn tally<S: Sink + RunLedger>(store: &S) {
    let run_id = RunId::parse("tally-1").expect("a run id");
    let mut run = RunSummary::start(run_id.clone(), ProcessingType::Batch, Utc::now());
    store.start_run(&run).await.expect("the run's start");
    let mut b = batch();
    b.lineage.run_id = run_id.clone();
    b.run_tally = true;
    b.rejected = vec![RejectedRecord {
        source: Arc::from("file:///contract.csv"),
        position: Position {
            line: 9,
            offset: 360,
        },
        rule: Rule::AmountFormat,
        field: Some(Column::Amount),
        message: "line 9".into(),
        raw: "9;x".into(),
    }];
    let row = async || {
        let runs = store.runs("tally-").await.expect("the runs");
        assert_eq!(runs.len(), 1, "{runs:?}");
        let r = runs[0].clone();
        (r.status, r.rows_read, r.rows_invalid, r.rows_written)
    };
    assert_eq!(row().await, (RunStatus::Running, 0, 0, 0));
    store.write_batch(b.clone()).await.expect("the batch");
    assert_eq!(row().await, (RunStatus::Running, 4, 1, 3));
    store.write_batch(b.clone()).await.expect("the batch again");
    assert_eq!(row().await, (RunStatus::Running, 8, 2, 3));
    let mut untallied = batch();
    untallied.lineage.run_id = run_id.clone();
    store.write_batch(untallied).await.expect("a batch");
    assert_eq!(row().await, (RunStatus::Running, 8, 2, 3));
    run.counts = Counts {
        read: 4,
        valid: 3,
        invalid: 1,
        written: 3,
        files: 1,
        ..Counts::default()
    };
    run.finish(Utc::now(), None, ErrorBudget::UNLIMITED);
    store.finish_run(&run).await.expect("the run's end");
    assert_eq!(row().await, (run.status, 4, 1, 3));
}

#[tokio::test]
async fn the_postgres_sink_adds_each_batch_to_its_run_in_the_batch_transaction() {
    let db = Database::create().await;
    let sink = txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the sink");
    tally(&sink).await;
}

#[tokio::test]
async fn the_sqlite_sink_adds_each_batch_to_its_run_in_the_batch_transaction() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sink =
        txflow_sqlite::SqliteStore::open(&dir.path().join("tally.db"), "test").expect("the sink");
    tally(&sink).await;
}

/// Rejected rows as a batch stores them, read back by run and rule.
async fn rejections<S: Sink + RunLedger>(store: &S) {
    let mut rejected = batch();
    let row = |line: u64, rule: Rule| RejectedRecord {
        source: Arc::from("file:///contract.csv"),
        position: Position {
            line,
            offset: line * 40,
        },
        rule,
        field: Some(Column::Amount),
        message: format!("line {line}"),
        raw: format!("{line};x"),
    };
    rejected.rejected = vec![
        row(7, Rule::AmountFormat),
        row(5, Rule::AmountFormat),
        row(9, Rule::SideValue),
    ];
    store.write_batch(rejected).await.expect("the batch");
    let query = |run: Option<&str>, rule: Option<&str>, limit| RejectionQuery {
        run: run.map(str::to_owned),
        rule: rule.map(str::to_owned),
        limit,
    };
    let all = store
        .rejections(&query(None, None, 10))
        .await
        .expect("the rows");
    let source = "file:///contract.csv".to_owned();
    assert_eq!(
        all.counts,
        [
            (Rule::AmountFormat.name().to_owned(), source.clone(), 2),
            (Rule::SideValue.name().to_owned(), source.clone(), 1),
        ]
    );
    let lines: Vec<i64> = all.rows.iter().map(|r| r.source_line).collect();
    assert_eq!(lines, [5, 7, 9], "{all:?}");
    let first = &all.rows[0];
    assert_eq!(
        (
            first.rule.as_str(),
            first.message.as_str(),
            first.raw.as_str()
        ),
        (Rule::AmountFormat.name(), "line 5", "5;x")
    );
    assert_eq!(first.run_id, "contract");
    let one_rule = store
        .rejections(&query(Some("contract"), Some(Rule::SideValue.name()), 10))
        .await
        .expect("the rows");
    assert_eq!((one_rule.counts.len(), one_rule.rows.len()), (1, 1));
    let limited = store
        .rejections(&query(None, None, 1))
        .await
        .expect("the rows");
    assert_eq!((limited.counts.len(), limited.rows.len()), (2, 1));
    let other = store
        .rejections(&query(Some("other"), None, 10))
        .await
        .expect("none");
    assert!(
        other.counts.is_empty() && other.rows.is_empty(),
        "{other:?}"
    );
}

#[tokio::test]
async fn the_postgres_ledger_reads_rejected_rows_by_run_and_rule() {
    let db = Database::create().await;
    let sink = txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the sink");
    rejections(&sink).await;
}

#[tokio::test]
async fn the_sqlite_ledger_reads_rejected_rows_by_run_and_rule() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sink = txflow_sqlite::SqliteStore::open(&dir.path().join("rejected.db"), "test")
        .expect("the sink");
    rejections(&sink).await;
}

#[tokio::test]
async fn the_postgres_ledger_keeps_runs_and_their_files() {
    let db = Database::create().await;
    let sink = txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the sink");
    ledger(&sink).await;
}

#[tokio::test]
async fn the_sqlite_ledger_keeps_runs_and_their_files() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sink =
        txflow_sqlite::SqliteStore::open(&dir.path().join("ledger.db"), "test").expect("the sink");
    ledger(&sink).await;
}

#[tokio::test]
async fn the_postgres_sink_keeps_unclassified_transactions_and_writes_each_row_once() {
    let db = Database::create().await;
    let sink = txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the sink");
    contract(&sink, async |sql: &str| db.count_sql(sql).await).await;
    // The flush's two partitions were one transaction: their offsets' row
    // versions share it.
    let transactions = db
        .count_sql(
            "SELECT count(DISTINCT xmin::text) FROM stream_offsets WHERE consumer_group = 'flush'",
        )
        .await;
    assert_eq!(transactions, 1);
}

#[tokio::test]
async fn the_sqlite_sink_keeps_unclassified_transactions_and_writes_each_row_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("contract.db");
    let sink = txflow_sqlite::SqliteStore::open(&path, "test").expect("the sink");
    let conn = rusqlite::Connection::open(&path).expect("a second connection");
    contract(&sink, async |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
    .await;
}

#[tokio::test]
async fn the_postgres_review_queue_and_labels_keep_their_contract() {
    let db = Database::create().await;
    let sink = txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the sink");
    review_contract(&sink, async |sql: &str| db.count_sql(sql).await).await;
}

#[tokio::test]
async fn the_sqlite_review_queue_and_labels_keep_their_contract() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("review.db");
    let sink = txflow_sqlite::SqliteStore::open(&path, "test").expect("the sink");
    let conn = rusqlite::Connection::open(&path).expect("a second connection");
    review_contract(&sink, async |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
    .await;
}

/// Model versions: registered and described, one active, a
/// reclassification's pages skipping what a version has classified, its
/// predictions added once, and the diff of two versions.
async fn registry_contract<S: Sink + ModelRegistry>(store: &S) {
    let b = batch();
    let ids: Vec<TransactionId> = b.transactions.iter().map(Transaction::id).collect();
    store.write_batch(b.clone()).await.expect("a batch");
    let model = Registration {
        version: "next-1",
        name: "next",
        kind: ModelKind::File,
        location: Some("file:///m.txm"),
    };
    store.register(model).await.expect("registered");
    store.register(model).await.expect("registered again");
    assert!(
        store
            .describe_model("next-1", "[\"a\",\"b\"]", "{}")
            .await
            .expect("described")
    );
    assert!(
        !store
            .describe_model("nope", "[]", "{}")
            .await
            .expect("not registered")
    );
    assert!(
        store
            .set_review_below("next-1", Some(0.7))
            .await
            .expect("threshold")
    );
    assert_eq!(
        store.review_below("next-1").await.expect("threshold"),
        Some(0.7)
    );
    assert_eq!(store.review_below("nope").await.expect("none"), None);
    assert!(!store.activate("nope").await.expect("not registered"));
    assert!(store.activate("next-1").await.expect("activated"));

    // Pages of two over the three stored transactions, in id order; once
    // `next-1` classified one, it is skipped.
    let everything = Selection::default();
    let todo = async |version: &str| {
        let (mut after, mut todo, mut pages) = (None, Vec::new(), 0);
        loop {
            let page = store
                .transactions_to_classify(&everything, version, after, 2)
                .await
                .expect("a page");
            let Some(last) = page.last else { break };
            pages += 1;
            after = Some(last);
            todo.extend(page.todo.iter().map(Transaction::id));
        }
        (todo, pages)
    };
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| id.to_string());
    assert_eq!(todo("next-1").await, (sorted.clone(), 2));
    let first = &b.transactions[0];
    let mut p = ReferenceModel::predict(first.id());
    p.model_version = "next-1".into();
    p.category = Category::new("Travel").expect("a category");
    let added = store
        .add_predictions(std::slice::from_ref(&p), &[], "reclassify-1")
        .await
        .expect("added");
    assert_eq!(added, (1, 0));
    let again = store
        .add_predictions(std::slice::from_ref(&p), &[], "reclassify-2")
        .await
        .expect("added again");
    assert_eq!(again, (0, 0));
    let (left, _) = todo("next-1").await;
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&first.id()));
    let page = store
        .transactions_to_classify(&everything, "other", None, 1)
        .await
        .expect("a page");
    let read = &page.todo[0];
    let stored = b
        .transactions
        .iter()
        .find(|t| t.id() == read.id())
        .expect("stored");
    assert_eq!(
        (
            read.description(),
            read.amount(),
            read.side(),
            read.timestamp().timestamp_micros()
        ),
        (
            stored.description(),
            stored.amount(),
            stored.side(),
            stored.timestamp().timestamp_micros()
        )
    );
    let by_run = Selection {
        run: Some("elsewhere".into()),
        ..Selection::default()
    };
    let none = store
        .transactions_to_classify(&by_run, "next-1", None, 10)
        .await
        .expect("an empty selection");
    assert!(none.todo.is_empty());

    let models = store.models().await.expect("the models");
    let next = models
        .iter()
        .find(|m| m.version == "next-1")
        .expect("next-1");
    assert_eq!(
        (
            next.kind_name(),
            next.active,
            next.predictions,
            next.review_below
        ),
        ("file", true, 1, Some(0.7))
    );
    assert!(next.registered_at.is_some());
    let reference = models
        .iter()
        .find(|m| m.version == ReferenceModel::VERSION)
        .expect("reference-1, seen in predictions");
    assert_eq!(
        (reference.kind_name(), reference.predictions),
        ("unregistered", 2)
    );

    let cells = store
        .diff(ReferenceModel::VERSION, "next-1")
        .await
        .expect("a diff");
    assert_eq!(cells.len(), 1, "{cells:?}");
    assert_eq!(cells[0].to, "Travel");
    assert_eq!((cells[0].count, cells[0].amount_cents), (1, -250));
    assert_eq!(cells[0].examples, [first.id().to_string()]);
}

#[tokio::test]
async fn the_postgres_model_registry_keeps_its_contract() {
    let db = Database::create().await;
    let sink = txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the sink");
    registry_contract(&sink).await;
}

#[tokio::test]
async fn the_sqlite_model_registry_keeps_its_contract() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sink = txflow_sqlite::SqliteStore::open(&dir.path().join("registry.db"), "test")
        .expect("the sink");
    registry_contract(&sink).await;
}

/// Replays: recorded once per letter and run, listed with whether their
/// transaction is stored with a prediction.
async fn replay_contract<S: Sink + ReplayLedger>(store: &S) {
    let b = batch();
    let predicted = b.predictions[0].transaction_id;
    let unclassified = b.unclassified[0].transaction_id;
    store.write_batch(b).await.expect("a batch");
    let replay = |offset: i64, key: String| Replay {
        letter_topic: "failed".into(),
        letter_partition: 0,
        letter_offset: offset,
        run_id: "replay-1".into(),
        source_topic: "transactions".into(),
        transaction_key: Some(key),
        error_class: "invalid".into(),
        error_rule: "amount_format".into(),
        attempt: 2,
    };
    let stored = replay(7, predicted.to_string().to_uppercase());
    let waiting = replay(8, unclassified.to_string());
    for r in [&stored, &waiting, &stored] {
        store.record_replay(r).await.expect("recorded");
    }
    let rows = store.replays().await.expect("the replays");
    let seen: Vec<(i64, bool)> = rows
        .iter()
        .map(|r| (r.replay.letter_offset, r.stored))
        .collect();
    assert_eq!(seen, [(7, true), (8, false)]);
    assert_eq!(rows[0].replay, stored);
}

#[tokio::test]
async fn the_postgres_replay_ledger_keeps_its_contract() {
    let db = Database::create().await;
    let sink = txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the sink");
    replay_contract(&sink).await;
}

#[tokio::test]
async fn the_sqlite_replay_ledger_keeps_its_contract() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sink =
        txflow_sqlite::SqliteStore::open(&dir.path().join("replays.db"), "test").expect("the sink");
    replay_contract(&sink).await;
}
