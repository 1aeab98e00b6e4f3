//! The classification service and its client. The happy path runs against
//! the real `txflow serve` router on a loopback port; faults come from small
//! servers that misbehave on purpose (`faults`).

mod faults;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use txflow_core::resilience::{Backoff, CircuitState};
use txflow_core::transaction::DecimalMark;
use txflow_core::{
    Amount, Classifier, FailureClass, ReferenceModel, Side, Transaction, TransactionId,
    TransactionParts,
};
use txflow_http::{ClientConfig, HttpClassifier, ServerConfig};

use faults::{Fault, FaultServer};

/// A real server on a free port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn server(config: ServerConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let addr = listener.local_addr().expect("the bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(txflow_http::serve(listener, config, async {
        let _ = stopped.await;
    }));
    Server { addr, _stop: stop }
}

fn transactions(n: usize) -> Vec<Transaction> {
    (0..n)
        .map(|i| {
            Transaction::from(TransactionParts {
                id: TransactionId::from_uuid(uuid::Uuid::new_v4()),
                source_id: i.to_string(),
                description: format!("Purchase {i}"),
                amount: Amount::parse("-12.34", DecimalMark::Point).expect("an amount"),
                timestamp: chrono::Utc::now(),
                merchant: (i % 2 == 0).then(|| "Monoprix".to_owned()),
                operation_type: "card".into(),
                side: Side::Debit,
            })
        })
        .collect()
}

/// A client with short delays, so fault tests run in about a second.
fn client(url: String) -> ClientConfig {
    let mut config = ClientConfig::new(url);
    config.batch_size = 10;
    config.max_in_flight = 3;
    config.request_timeout = Duration::from_millis(500);
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        max_attempts: 4,
    };
    config.breaker_threshold = 3;
    config.breaker_cool_down = Duration::from_millis(200);
    config.max_outage = Some(Duration::from_secs(20));
    config
}

#[tokio::test]
async fn the_client_gets_the_reference_model_answers_in_order_through_the_real_server() {
    let server = server(ServerConfig::default()).await;
    let classifier =
        HttpClassifier::new(client(format!("http://{}", server.addr))).expect("a client");
    let txs = transactions(95);
    let outcomes = classifier.classify(&txs).await.expect("an answer");
    assert_eq!(outcomes.len(), txs.len());
    for (tx, outcome) in txs.iter().zip(outcomes) {
        let prediction = outcome.expect("a prediction");
        assert_eq!(prediction, ReferenceModel::predict(tx.id()));
    }
}

#[tokio::test]
async fn the_service_answers_the_original_contract_and_the_extended_one() {
    let server = server(ServerConfig::default()).await;
    let body = json!([
        {"id": "b9fa6684-502b-4695-8f92-247432ba610d", "description": "Uber", "amount": -12.5,
         "timestamp": "2024-03-01T08:15:00", "merchant": null, "operation_type": "card", "side": "debit"},
        {"id": "00000000-0000-0000-0000-000000000000", "description": "Rent", "amount": -900,
         "timestamp": "2024-03-01T08:15:00+01:00", "operation_type": "transfer", "side": "debit"},
        {"id": "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "description": "Dinner", "amount": 10.25,
         "timestamp": "2024-03-01 08:15:00", "merchant": "Chez Paul", "operation_type": "card", "side": "credit"}
    ]);
    let (status, answer) = post(server.addr, &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!([
            {"transaction_id": "b9fa6684-502b-4695-8f92-247432ba610d", "category": "Transportation",
             "confidence_score": 1.0, "model_version": "reference-1"},
            {"transaction_id": "00000000-0000-0000-0000-000000000000", "category": "Rent",
             "confidence_score": 1.0, "model_version": "reference-1"},
            {"transaction_id": "ffffffff-ffff-ffff-ffff-ffffffffffff", "category": "Restaurant",
             "confidence_score": 1.0, "model_version": "reference-1"}
        ])
    );
    let (status, answer) = post(server.addr, &json!([])).await;
    assert_eq!((status, answer), (200, json!([])));
}

#[tokio::test]
async fn a_malformed_request_gets_422_listing_every_problem() {
    let server = server(ServerConfig::default()).await;
    let body = json!([
        {"id": "not-a-uuid", "description": "x", "amount": -1.234, "timestamp": "yesterday",
         "operation_type": "card", "side": "sideways"},
        {"description": "x", "amount": "12", "timestamp": "2024-01-01T00:00:00Z", "operation_type": "card", "side": "debit"},
        42
    ]);
    let (status, answer) = post(server.addr, &body).await;
    assert_eq!(status, 422, "{answer}");
    let problems: Vec<(Value, Value)> = answer["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| (p["index"].clone(), p["field"].clone()))
        .collect();
    assert_eq!(
        problems,
        [
            (json!(1), json!("id")),
            (json!(1), json!("amount")),
            (json!(2), Value::Null),
        ]
    );
    // Once the shape is right, each item is judged by the core's rules, as
    // a CSV row or a stream event is: its first broken rule, by name.
    let long = "d".repeat(1_025);
    let body = json!([
        {"id": "not-a-uuid", "description": "x", "amount": -1.234, "timestamp": "yesterday",
         "operation_type": "card", "side": "sideways"},
        {"id": "b9fa6684-502b-4695-8f92-247432ba610d", "description": "Refund", "amount": 12.5,
         "timestamp": "2024-03-01T08:15:00Z", "operation_type": "card", "side": "debit"},
        {"id": "b9fa6684-502b-4695-8f92-247432ba610d", "description": long, "amount": -1,
         "timestamp": "2024-03-01T08:15:00Z", "operation_type": "card", "side": "debit"},
        {"id": "not-a-uuid", "description": "x", "amount": -1,
         "timestamp": "2024-03-01T08:15:00Z", "operation_type": "card", "side": "debit"},
        {"id": "b9fa6684-502b-4695-8f92-247432ba610d", "description": "x", "amount": -1,
         "timestamp": "2024-03-01T08:15:00Z", "operation_type": "card", "side": "debit"}
    ]);
    let (status, answer) = post(server.addr, &body).await;
    assert_eq!(status, 422);
    let judged: Vec<(i64, &str, &str)> = answer["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["index"].as_i64().expect("an index"),
                p["field"].as_str().expect("a field"),
                p["rule"].as_str().expect("a rule"),
            )
        })
        .collect();
    assert_eq!(
        judged,
        [
            (0, "amount", "amount_precision"),
            (1, "amount", "side_sign"),
            (2, "description", "field_length"),
            (3, "id", "id_format"),
        ]
    );
    let (status, _) = post_raw(server.addr, b"{not json".to_vec()).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn too_many_items_or_too_many_bytes_get_413() {
    let server = server(ServerConfig {
        max_batch: 5,
        max_body_bytes: 4096,
        ..ServerConfig::default()
    })
    .await;
    let item = json!({"id": "b9fa6684-502b-4695-8f92-247432ba610d", "description": "Uber", "amount": -12.5,
        "timestamp": "2024-03-01T08:15:00", "merchant": null, "operation_type": "card", "side": "debit"});
    let (status, answer) = post(server.addr, &json!(vec![item.clone(); 6])).await;
    assert_eq!(status, 413);
    assert!(
        answer["error"]
            .as_str()
            .expect("an error")
            .contains("maximum is 5")
    );
    let (status, _) = post_raw(server.addr, vec![b' '; 10_000]).await;
    assert_eq!(status, 413);
    let (status, _) = post(server.addr, &json!(vec![item; 5])).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn health_ready_metrics_and_the_openapi_document() {
    let server = server(ServerConfig::default()).await;
    let http = http();
    let base = format!("http://{}", server.addr);
    post(server.addr, &json!([])).await;
    for path in ["/health", "/ready"] {
        let r = http.get(format!("{base}{path}")).send().await.expect(path);
        assert_eq!(r.status(), 200, "{path}");
    }
    let ready: Value = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("ready")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["model_version"], "reference-1");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("txflow_http_requests_total{route=\"/predict\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("txflow_http_request_duration_seconds_bucket"),
        "{metrics}"
    );

    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .expect("a version")
            .starts_with("3.")
    );
    let predict = &doc["paths"]["/predict"]["post"];
    assert!(
        predict["requestBody"]["content"]["application/json"]["schema"].is_object(),
        "{predict}"
    );
    for status in ["200", "413", "422"] {
        assert!(
            predict["responses"][status].is_object(),
            "no {status} in {predict}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    for name in ["PredictItem", "PredictAnswer", "ErrorBody", "Problem"] {
        assert!(schemas[name]["properties"].is_object(), "no schema {name}");
    }
    let required = schemas["PredictItem"]["required"]
        .as_array()
        .expect("required fields");
    assert!(required.contains(&json!("id")) && !required.contains(&json!("merchant")));
}

#[tokio::test]
async fn a_503_then_success_is_retried_and_nothing_is_lost() {
    let faults = FaultServer::start(Fault::FailFirst {
        count: 2,
        status: 503,
    })
    .await;
    let classifier = HttpClassifier::new(client(faults.url())).expect("a client");
    let txs = transactions(10);
    let outcomes = classifier.classify(&txs).await.expect("an answer");
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(faults.requests(), 3);
}

#[tokio::test]
async fn a_429_is_retried_after_the_delay_the_service_asks_for() {
    let faults = FaultServer::start(Fault::TooManyRequests {
        count: 1,
        retry_after_secs: 1,
    })
    .await;
    let classifier = HttpClassifier::new(client(faults.url())).expect("a client");
    let started = Instant::now();
    let outcomes = classifier
        .classify(&transactions(3))
        .await
        .expect("an answer");
    assert!(outcomes.iter().all(Result::is_ok));
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_permanent_400_sends_the_records_to_the_error_path_with_its_message() {
    let faults = FaultServer::start(Fault::Always { status: 400 }).await;
    let classifier = HttpClassifier::new(client(faults.url())).expect("a client");
    let outcomes = classifier
        .classify(&transactions(15))
        .await
        .expect("an answer");
    assert_eq!(outcomes.len(), 15);
    for outcome in outcomes {
        let failure = outcome.expect_err("refused");
        assert_eq!(failure.class, FailureClass::Refused);
        assert!(failure.message.contains("400"), "{}", failure.message);
        assert!(
            failure.message.contains("bad request on purpose"),
            "{}",
            failure.message
        );
    }
    assert_eq!(faults.requests(), 2, "a refusal is not retried");
    assert_eq!(classifier.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_request_that_times_out_is_retried() {
    let faults = FaultServer::start(Fault::SlowFirst {
        count: 1,
        delay: Duration::from_secs(2),
    })
    .await;
    let classifier = HttpClassifier::new(client(faults.url())).expect("a client");
    let outcomes = classifier
        .classify(&transactions(5))
        .await
        .expect("an answer");
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(faults.requests(), 2);
}

#[tokio::test]
async fn an_outage_opens_the_circuit_pauses_and_recovers_without_failing_a_record() {
    let outage = Duration::from_millis(1500);
    let faults = FaultServer::start(Fault::OutageFor(outage)).await;
    let classifier = Arc::new(HttpClassifier::new(client(faults.url())).expect("a client"));
    // Watch the circuit while the batch runs.
    let watcher = {
        let classifier = Arc::clone(&classifier);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..150 {
                let state = classifier.circuit_state();
                if seen.last() != Some(&state) {
                    seen.push(state);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        })
    };
    let txs = transactions(40);
    let outcomes = classifier
        .classify(&txs)
        .await
        .expect("an answer once the service is back");
    assert_eq!(outcomes.len(), 40);
    assert!(
        outcomes.iter().all(Result::is_ok),
        "no record fails because of an outage"
    );
    let seen = watcher.await.expect("the watcher");
    assert!(
        seen.contains(&CircuitState::Open),
        "the circuit never opened: {seen:?}"
    );
    assert_eq!(classifier.circuit_state(), CircuitState::Closed);
    // With the circuit open the client probes every 200 ms instead of
    // hammering: 1.5 s of outage costs a few dozen requests at most, not hundreds.
    assert!(
        faults.requests() < 40,
        "{} requests during the outage",
        faults.requests()
    );
}

#[tokio::test]
async fn an_outage_longer_than_allowed_fails_the_call_not_the_records() {
    let faults = FaultServer::start(Fault::Always { status: 503 }).await;
    let mut config = client(faults.url());
    config.max_outage = Some(Duration::from_millis(600));
    let classifier = HttpClassifier::new(config).expect("a client");
    let error = classifier
        .classify(&transactions(5))
        .await
        .expect_err("unavailable");
    let message = error.to_string();
    assert!(
        message.contains("unavailable") && message.contains("503"),
        "{message}"
    );
}

#[tokio::test]
async fn one_bad_item_among_good_ones_fails_only_that_item() {
    let faults = FaultServer::start(Fault::BadItems).await;
    let classifier = HttpClassifier::new(client(faults.url())).expect("a client");
    let txs = transactions(10);
    let outcomes = classifier.classify(&txs).await.expect("an answer");
    // The fault server spoils items 1 (unknown category), 3 (confidence 1.5),
    // 5 (missing) and 7 (answered twice).
    let classes: Vec<Option<FailureClass>> = outcomes
        .iter()
        .map(|o| o.as_ref().err().map(|f| f.class))
        .collect();
    use FailureClass::{InvalidAnswer, MissingAnswer};
    assert_eq!(
        classes,
        [
            None,
            Some(InvalidAnswer),
            None,
            Some(InvalidAnswer),
            None,
            Some(MissingAnswer),
            None,
            Some(InvalidAnswer),
            None,
            None
        ]
    );
    for (tx, outcome) in txs.iter().zip(&outcomes) {
        if let Ok(p) = outcome {
            assert_eq!(*p, ReferenceModel::predict(tx.id()));
        }
    }
}

#[tokio::test]
async fn answers_of_the_original_service_are_accepted_without_confidence_or_version() {
    let faults = FaultServer::start(Fault::OriginalContract).await;
    let mut config = client(faults.url());
    config.default_model_version = "original-ml-api".into();
    let classifier = HttpClassifier::new(config).expect("a client");
    let txs = transactions(4);
    for (tx, outcome) in txs
        .iter()
        .zip(classifier.classify(&txs).await.expect("an answer"))
    {
        let p = outcome.expect("a prediction");
        assert_eq!(p.category, ReferenceModel::category(tx.id()));
        assert_eq!(p.confidence, None);
        assert_eq!(p.model_version, "original-ml-api");
    }
}

async fn post(addr: SocketAddr, body: &Value) -> (u16, Value) {
    let (status, bytes) = post_raw(addr, serde_json::to_vec(body).expect("json")).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// An HTTP client, rustls's process provider installed first (as txflow's
/// binary does).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post_raw(addr: SocketAddr, body: Vec<u8>) -> (u16, Vec<u8>) {
    let r = http()
        .post(format!("http://{addr}/predict"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("a response");
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("a body").to_vec())
}
