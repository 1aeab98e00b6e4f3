//! The connector against a test double of the `_bulk` API: an HTTP server in
//! the test that implements the documented request and response shapes
//! (NDJSON actions, per-item statuses, `errors: true`, 429 throttling, index
//! creation answering `resource_already_exists_exception`). No
//! Elasticsearch or OpenSearch server can run here; this is not one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{post, put};
use serde_json::{Value, json};
use txflow_core::transaction::{Amount, Side, TransactionId, TransactionParts};
use txflow_core::{
    Category, Connector, ConnectorError, Lineage, Prediction, PredictionEvent, ProcessingType,
    Resume, RunId, SinkRecord, Transaction,
};
use txflow_elasticsearch::ElasticsearchConnector;

#[derive(Default)]
struct Cluster {
    /// Index name → its creation body.
    indices: HashMap<String, Value>,
    /// (index, id) → document.
    documents: HashMap<(String, String), Value>,
    /// Requests to throttle whole, then items to throttle one by one.
    throttle_requests: usize,
    throttle_items: usize,
    bulk_requests: usize,
}

type Shared = Arc<Mutex<Cluster>>;

async fn create_index(
    State(cluster): State<Shared>,
    Path(index): Path<String>,
    body: String,
) -> impl IntoResponse {
    let mut c = cluster.lock().expect("the cluster");
    if c.indices.contains_key(&index) {
        let error = json!({"error": {"type": "resource_already_exists_exception",
            "reason": format!("index [{index}] already exists")}, "status": 400});
        return (StatusCode::BAD_REQUEST, axum::Json(error));
    }
    let mapping: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    c.indices.insert(index.clone(), mapping);
    (
        StatusCode::OK,
        axum::Json(json!({"acknowledged": true, "index": index})),
    )
}

async fn bulk(State(cluster): State<Shared>, body: String) -> impl IntoResponse {
    let mut c = cluster.lock().expect("the cluster");
    c.bulk_requests += 1;
    if c.throttle_requests > 0 {
        c.throttle_requests -= 1;
        let error = json!({"error": {"type": "es_rejected_execution_exception",
            "reason": "rejected execution"}, "status": 429});
        return (StatusCode::TOO_MANY_REQUESTS, axum::Json(error));
    }
    let lines: Vec<&str> = body.lines().collect();
    let mut items = Vec::new();
    let mut errors = false;
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).expect("an action line");
        let doc: Value = serde_json::from_str(pair[1]).expect("a document line");
        let index = action["index"]["_index"]
            .as_str()
            .expect("_index")
            .to_owned();
        let id = action["index"]["_id"].as_str().expect("_id").to_owned();
        let item = if doc["description"]
            .as_str()
            .is_some_and(|d| d.contains("REJECT"))
        {
            errors = true;
            json!({"index": {"_index": index, "_id": id, "status": 400, "error": {
                "type": "mapper_parsing_exception", "reason": "failed to parse field [description]"}}})
        } else if c.throttle_items > 0 {
            c.throttle_items -= 1;
            errors = true;
            json!({"index": {"_index": index, "_id": id, "status": 429, "error": {
                "type": "es_rejected_execution_exception", "reason": "queue full"}}})
        } else {
            let existed = c
                .documents
                .insert((index.clone(), id.clone()), doc)
                .is_some();
            let (status, result) = if existed {
                (200, "updated")
            } else {
                (201, "created")
            };
            json!({"index": {"_index": index, "_id": id, "status": status, "result": result}})
        };
        items.push(item);
    }
    (
        StatusCode::OK,
        axum::Json(json!({"took": 1, "errors": errors, "items": items})),
    )
}

async fn start(cluster: Shared) -> String {
    let app = Router::new()
        .route("/_bulk", post(bulk))
        .route("/{index}", put(create_index))
        .with_state(cluster);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("elasticsearch+http://{address}/predictions")
}

fn record(n: u128, description: &str) -> SinkRecord {
    let id = TransactionId::from_uuid(uuid::Uuid::from_u128(n));
    let timestamp = chrono::DateTime::parse_from_rfc3339("2023-11-28T06:35:12Z")
        .expect("a time")
        .to_utc();
    let transaction = Transaction::from(TransactionParts {
        id,
        source_id: n.to_string(),
        description: description.into(),
        amount: Amount::from_cents(-95_240).expect("in range"),
        timestamp,
        merchant: Some("EDF".into()),
        operation_type: "card".into(),
        side: Side::Debit,
    });
    SinkRecord {
        partition: 0,
        offset: n as i64,
        event: PredictionEvent {
            prediction: Prediction {
                transaction_id: id,
                category: Category::new("Utilities").expect("a name"),
                confidence: Some(0.9),
                model_version: "reference-1".into(),
            },
            transaction,
            predicted_at: timestamp,
            lineage: Lineage {
                run_id: RunId::parse("g/m").expect("a run id"),
                source: "kafka://t/0".into(),
                processing_type: ProcessingType::Streaming,
            },
            position: None,
            needs_review: false,
        },
    }
}

#[tokio::test]
async fn documents_are_indexed_by_transaction_id_with_explicit_mappings_and_a_replay_overwrites() {
    let cluster = Shared::default();
    let es = ElasticsearchConnector::new(&start(Arc::clone(&cluster)).await).expect("a URL");
    assert_eq!(
        es.resume("t", &[0]).await.expect("resume"),
        Resume::Committed
    );
    // A second member finds the index there.
    assert_eq!(
        es.resume("t", &[1]).await.expect("resume"),
        Resume::Committed
    );
    let records: Vec<SinkRecord> = (1..=3).map(|n| record(n, "Card expense at EDF")).collect();
    assert!(
        es.write("t", 0, &records)
            .await
            .expect("written")
            .is_empty()
    );
    assert!(
        es.write("t", 0, &records)
            .await
            .expect("written")
            .is_empty()
    );
    let c = cluster.lock().expect("the cluster");
    assert_eq!(
        c.documents.len(),
        3,
        "a replay overwrote the same documents"
    );
    let properties = &c.indices["predictions"]["mappings"]["properties"];
    assert_eq!(properties["category"]["type"], "keyword");
    assert_eq!(properties["description"]["type"], "text");
    assert_eq!(properties["amount"]["type"], "scaled_float");
    assert_eq!(properties["timestamp"]["type"], "date");
    let doc = &c.documents[&(
        "predictions".to_owned(),
        uuid::Uuid::from_u128(2).to_string(),
    )];
    assert_eq!(doc["amount"], "-952.40");
    assert_eq!(doc["category"], "Utilities");
}

#[tokio::test]
async fn a_document_refused_for_its_content_is_reported_alone_and_the_others_are_indexed() {
    let cluster = Shared::default();
    let es = ElasticsearchConnector::new(&start(Arc::clone(&cluster)).await).expect("a URL");
    let records = vec![
        record(1, "fine"),
        record(2, "REJECT me"),
        record(3, "fine too"),
    ];
    let refused = es.write("t", 0, &records).await.expect("answered");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].index, 1);
    assert_eq!(refused[0].rule, "mapper_parsing_exception");
    assert!(
        refused[0].message.starts_with("400 "),
        "{}",
        refused[0].message
    );
    assert_eq!(cluster.lock().expect("the cluster").documents.len(), 2);
}

#[tokio::test]
async fn throttling_of_the_request_or_of_an_item_is_waited_out_never_dead_lettered() {
    let cluster = Shared::default();
    let es = ElasticsearchConnector::new(&start(Arc::clone(&cluster)).await).expect("a URL");
    let records: Vec<SinkRecord> = (1..=4).map(|n| record(n, "x")).collect();
    cluster.lock().expect("the cluster").throttle_requests = 1;
    let e = es.write("t", 0, &records).await.expect_err("throttled");
    assert!(matches!(e, ConnectorError::Unavailable(_)), "{e}");
    cluster.lock().expect("the cluster").throttle_items = 1;
    let e = es
        .write("t", 0, &records)
        .await
        .expect_err("an item throttled");
    assert!(matches!(e, ConnectorError::Unavailable(_)), "{e}");
    assert!(
        es.write("t", 0, &records)
            .await
            .expect("written")
            .is_empty()
    );
    let c = cluster.lock().expect("the cluster");
    assert_eq!(c.documents.len(), 4);
    assert_eq!(c.bulk_requests, 3);
}

#[tokio::test]
async fn a_cluster_that_is_not_there_is_unavailable_and_a_bad_index_name_is_refused_at_once() {
    let es =
        ElasticsearchConnector::new("elasticsearch+http://127.0.0.1:9/predictions").expect("a URL");
    let e = es
        .write("t", 0, &[record(1, "x")])
        .await
        .expect_err("no cluster");
    assert!(matches!(e, ConnectorError::Unavailable(_)), "{e}");
    let e = ElasticsearchConnector::new("elasticsearch+http://h:9200/Bad/Name").expect_err("bad");
    assert!(e.to_string().contains("index name"), "{e}");
    let secret =
        ElasticsearchConnector::new("elasticsearch+https://u:hunter2@h:9200/p").expect("a URL");
    assert!(
        !secret.describe().contains("hunter2"),
        "{}",
        secret.describe()
    );
}
