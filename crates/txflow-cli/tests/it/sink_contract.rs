//! The sink port's contract, run against each adapter: PostgreSQL (real
//! server) and SQLite.

use std::sync::Arc;

use chrono::Utc;
use txflow_core::transaction::DecimalMark;
use txflow_core::{
    Amount, Batch, Checkpoint, ClassifyFailure, FailureClass, Lineage, OffsetStore, Position,
    ProcessingType, ReferenceModel, RunId, Side, Sink, Transaction, TransactionId,
    TransactionParts, Unclassified,
};

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
        checkpoint: None,
    }
}

/// Writes a batch with one unclassified transaction twice; `count` runs a
/// `SELECT count(*)`.
async fn contract<S: Sink + OffsetStore, F: AsyncFn(&str) -> i64>(sink: &S, count: F) {
    let once = batch();
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

    // A stream's checkpoint is stored with its batch and never goes back.
    let checkpoint = |next_offset| Checkpoint {
        group: "g".into(),
        topic: "transactions".into(),
        partition: 2,
        next_offset,
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
}

#[tokio::test]
async fn the_postgres_sink_keeps_unclassified_transactions_and_writes_each_row_once() {
    let db = Database::create().await;
    let sink = txflow_postgres::PostgresSink::connect(&db.url, "test")
        .await
        .expect("the sink");
    contract(&sink, async |sql: &str| db.count_sql(sql).await).await;
}

#[tokio::test]
async fn the_sqlite_sink_keeps_unclassified_transactions_and_writes_each_row_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("contract.db");
    let sink = txflow_sqlite::SqliteSink::open(&path, "test").expect("the sink");
    let conn = rusqlite::Connection::open(&path).expect("a second connection");
    contract(&sink, async |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
    .await;
}
