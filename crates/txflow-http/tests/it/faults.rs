//! A classification service that misbehaves on purpose. Its healthy answers
//! come from the reference model, like the real service's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use txflow_core::{ReferenceModel, TransactionId};

#[derive(Debug, Clone)]
pub enum Fault {
    /// `count` answers with `status`, then healthy ones.
    FailFirst { count: usize, status: u16 },
    /// `count` 429s with a Retry-After, then healthy answers.
    TooManyRequests { count: usize, retry_after_secs: u64 },
    /// Always `status`.
    Always { status: u16 },
    /// `count` answers late by `delay`, then prompt ones.
    SlowFirst { count: usize, delay: Duration },
    /// 503 until this long after start, then healthy.
    OutageFor(Duration),
    /// Healthy but for items 1, 3, 5 and 7 of each request.
    BadItems,
    /// Only `transaction_id` and `category`, as the original service.
    OriginalContract,
}

struct Shared {
    fault: Fault,
    started: Instant,
    requests: AtomicUsize,
}

pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultServer {
    pub async fn start(fault: Fault) -> FaultServer {
        let shared = Arc::new(Shared {
            fault,
            started: Instant::now(),
            requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/predict", post(predict))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding port 0");
        let addr = listener.local_addr().expect("the bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultServer { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

async fn predict(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    let status = |code: u16| StatusCode::from_u16(code).expect("a status");
    match &shared.fault {
        Fault::FailFirst {
            count,
            status: code,
        } if n < *count => {
            return (status(*code), "failing on purpose").into_response();
        }
        Fault::TooManyRequests {
            count,
            retry_after_secs,
        } if n < *count => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "slow down",
            )
                .into_response();
        }
        Fault::Always { status: code } => {
            let body = json!({"error": "bad request on purpose", "problems": []});
            return (status(*code), axum::Json(body)).into_response();
        }
        Fault::SlowFirst { count, delay } if n < *count => tokio::time::sleep(*delay).await,
        Fault::OutageFor(d) if shared.started.elapsed() < *d => {
            return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        }
        _ => {}
    }
    let items: Vec<Value> = serde_json::from_slice(&body).expect("a JSON list");
    let mut answers: Vec<Value> = items
        .iter()
        .map(|item| {
            let id: uuid::Uuid = item["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("a UUID");
            let p = ReferenceModel::predict(TransactionId::from_uuid(id));
            match shared.fault {
                Fault::OriginalContract => {
                    json!({"transaction_id": id, "category": p.category.as_str()})
                }
                _ => json!({"transaction_id": id, "category": p.category.as_str(),
                            "confidence_score": 1.0, "model_version": "reference-1"}),
            }
        })
        .collect();
    if matches!(shared.fault, Fault::BadItems) && answers.len() >= 8 {
        answers[1]["category"] = json!("Pets");
        answers[3]["confidence_score"] = json!(1.5);
        let seventh = answers[7].clone();
        answers.push(seventh);
        answers.remove(5);
    }
    axum::Json(answers).into_response()
}
