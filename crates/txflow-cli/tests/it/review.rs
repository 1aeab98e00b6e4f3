//! The review loop end to end: `--review-below` routing in batch (SQLite
//! and PostgreSQL) and in the stream, labels winning in the views, the
//! export → train round trip, the JSON API's answers, and a person labeling
//! on the page in headless Chromium driven through the DevTools protocol.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Database, harness_var, txflow};
use crate::learned::trained;
use crate::servers::free_port;
use crate::stream::{Member, Topics, assert_valid_events, wait_for};

/// Predictions under this are queued.
const BELOW: &str = "0.5";

/// `rows` generated transactions in `dir/name`.
fn generated(dir: &Path, name: &str, rows: u32) -> String {
    let run = txflow(dir, &["generate", "--rows", &rows.to_string()]);
    run.assert_code(0);
    let path = dir.join(name);
    std::fs::write(&path, &run.stdout).expect("writing the generated file");
    path.to_str().expect("utf-8").to_owned()
}

fn sqlite_count(path: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path)
        .expect("the SQLite file")
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `txflow review list --json` against `database`.
fn queue(dir: &Path, database: &str, limit: u32) -> Vec<Value> {
    let run = txflow(
        dir,
        &[
            "review",
            "list",
            "--json",
            "--limit",
            &limit.to_string(),
            "--database-url",
            database,
        ],
    );
    run.assert_code(0);
    serde_json::from_str(&run.stdout).expect("a JSON array")
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[tokio::test]
async fn uncertain_predictions_are_queued_labeled_exported_and_win_in_both_databases() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    let (model, _) = trained(d);
    let model = model.to_str().expect("utf-8");
    let input = generated(d, "in.csv", 300);
    let file = d.join("review.db");
    let sqlite = format!("sqlite://{}", file.display());

    // The threshold from the configuration file, as any batch flag.
    std::fs::write(
        d.join("txflow.toml"),
        format!("[batch]\nreview_below = {BELOW}\n"),
    )
    .expect("writing the configuration");
    let run = txflow(
        d,
        &[
            "--config",
            "txflow.toml",
            "batch",
            &input,
            "--classifier",
            model,
            "--database-url",
            &sqlite,
            "--no-progress",
        ],
    );
    run.assert_code(0);
    let under = sqlite_count(
        &file,
        "SELECT count(*) FROM predictions WHERE confidence < 0.5",
    );
    assert!(under > 0 && under < 300, "{under} of 300 under {BELOW}");
    assert!(
        run.stdout
            .contains(&format!("{under} prediction(s) queued for review")),
        "{}",
        run.stdout
    );

    // Listed least confident first, each with the model's best three.
    let items = queue(d, &sqlite, 1000);
    assert_eq!(items.len() as i64, under);
    let confidences: Vec<f64> = items
        .iter()
        .map(|i| i["confidence"].as_f64().expect("a confidence"))
        .collect();
    assert!(
        confidences.windows(2).all(|w| w[0] <= w[1]),
        "{confidences:?}"
    );
    for item in &items {
        let top = item["top"].as_array().expect("top");
        assert_eq!(top.len(), 3, "{item}");
        assert_eq!(top[0]["category"], item["category"]);
        assert_eq!(top[0]["confidence"], item["confidence"]);
        for key in [
            "transaction_id",
            "description",
            "amount",
            "timestamp",
            "model_version",
        ] {
            assert!(item[key].is_string(), "{key} in {item}");
        }
    }

    // Labels: one refused (not a category of the model), two stored.
    let label = |id: &str, category: &str| {
        txflow(
            d,
            &[
                "review",
                "label",
                id,
                category,
                "--by",
                "ana",
                "--database-url",
                &sqlite,
            ],
        )
    };
    let first = text(&items[0], "transaction_id");
    let refused = label(first, "Pets");
    refused.assert_code(1);
    assert!(
        refused.stderr.contains("not a category of model") && refused.stderr.contains(first),
        "{}",
        refused.stderr
    );
    let chosen: Vec<(String, String)> = items[..2]
        .iter()
        .map(|i| {
            let category = text(&i["top"][1], "category").to_owned();
            (text(i, "transaction_id").to_owned(), category)
        })
        .collect();
    for (id, category) in &chosen {
        label(id, category).assert_code(0);
    }
    assert_eq!(queue(d, &sqlite, 1000).len() as i64, under - 2);
    for (id, category) in &chosen {
        let shown = format!(
            "SELECT count(*) FROM transactions_with_latest_prediction WHERE id = '{id}' \
             AND category = '{category}' AND confidence IS NULL AND labeled_by = 'ana'"
        );
        assert_eq!(sqlite_count(&file, &shown), 1, "{id}");
    }

    // Export → train: the labels are training rows of the next model.
    let export = d.join("labels.csv");
    txflow(
        d,
        &[
            "review",
            "export",
            "--output",
            export.to_str().expect("utf-8"),
            "--database-url",
            &sqlite,
        ],
    )
    .assert_code(0);
    let exported = std::fs::read_to_string(&export).expect("the export");
    let records = txflow_csv::labeled::read_labeled(exported.as_bytes()).expect("a labeled file");
    let got: BTreeMap<String, String> = records
        .iter()
        .map(|r| (r.transaction_id.clone().expect("an id"), r.category.clone()))
        .collect();
    assert_eq!(got, chosen.iter().cloned().collect::<BTreeMap<_, _>>());
    assert!(
        records
            .iter()
            .all(|r| r.amount.is_some() && r.side.is_some())
    );
    let base = d.join("base.csv");
    crate::learned::write_labeled(&base, &crate::learned::rows(3, 40));
    let base_rows = crate::learned::rows(3, 40).len();
    let next = d.join("next.txm");
    let trained_next = |args: &[&str]| {
        let mut all = vec![
            "train",
            base.to_str().expect("utf-8"),
            "--output",
            next.to_str().expect("utf-8"),
            "--iterations",
            "5",
            "--hash-bits",
            "12",
        ];
        all.extend_from_slice(args);
        let run = txflow(d, &all);
        run.assert_code(0);
        let bytes = std::fs::read(&next).expect("the next model");
        txflow_learn::file::decode(&bytes)
            .expect("a model")
            .header()
            .training
            .rows
    };
    assert_eq!(
        trained_next(&[export.to_str().expect("utf-8")]),
        base_rows + 2
    );
    assert_eq!(
        trained_next(&["--from-database", "--database-url", &sqlite]),
        base_rows + 2
    );

    // PostgreSQL: the same run queues the same items; imported labels win.
    let db = Database::create().await;
    txflow(
        d,
        &[
            "batch",
            &input,
            "--classifier",
            model,
            "--review-below",
            BELOW,
            "--database-url",
            &db.url,
            "--no-progress",
        ],
    )
    .assert_code(0);
    assert_eq!(db.count("review_queue", "status = 'pending'").await, under);
    let import = txflow(
        d,
        &[
            "review",
            "import",
            export.to_str().expect("utf-8"),
            "--database-url",
            &db.url,
        ],
    );
    import.assert_code(0);
    assert!(
        import.stdout.contains("2 label(s) imported"),
        "{}",
        import.stdout
    );
    assert_eq!(
        db.count("review_queue", "status = 'pending'").await,
        under - 2
    );
    for (id, category) in &chosen {
        let shown = format!(
            "SELECT count(*) FROM transactions_with_latest_prediction WHERE id = '{id}' \
             AND category = '{category}' AND confidence IS NULL AND labeled_by = 'import'"
        );
        assert_eq!(db.count_sql(&shown).await, 1, "{id}");
    }
    let in_totals = db
        .count_sql(
            "SELECT sum(transactions)::bigint FROM category_totals c
             WHERE EXISTS (SELECT 1 FROM labels l WHERE l.category = c.category)",
        )
        .await;
    assert!(in_totals >= 2, "{in_totals}");
}

#[tokio::test]
async fn the_stream_queues_with_its_rows_and_its_events_say_which_need_review() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (model, _) = trained(dir.path());
    let model = model.to_str().expect("utf-8");
    let topics = Topics::create();
    let db = Database::create().await;
    let member = Member::start(
        &topics,
        &db,
        &crate::harness::unique("g"),
        "m1",
        &["--classifier", model, "--review-below", BELOW],
    );
    topics.produce(600);
    wait_for(&db, "predictions", 600, Duration::from_secs(90)).await;
    member.stop();
    let under = db.count("predictions", "confidence < 0.5").await;
    assert!(under > 0 && under < 600, "{under}");
    assert_eq!(db.count("review_queue", "").await, under);
    assert_eq!(
        db.count(
            "review_queue q JOIN predictions p ON p.transaction_id = q.transaction_id \
             AND p.model_version = q.model_version",
            "p.confidence < 0.5 AND q.run_id LIKE '%/m1'"
        )
        .await,
        under
    );
    let events = topics.read_all(&topics.predictions);
    assert_valid_events(&events, "streaming");
    let mut flagged = HashSet::new();
    for m in &events {
        let event: Value =
            serde_json::from_slice(rdkafka::Message::payload(m).expect("a payload")).expect("JSON");
        let p = &event["prediction"];
        let unsure = p["confidence"].as_f64().expect("a confidence") < 0.5;
        assert_eq!(p["needs_review"], json!(unsure), "{event}");
        if unsure {
            flagged.insert(text(&event["transaction"], "id").to_owned());
        }
    }
    assert_eq!(flagged.len() as i64, under);
}

/// A `txflow review serve` process, killed when dropped.
struct ReviewServer {
    child: Child,
    url: String,
}

impl ReviewServer {
    fn start(dir: &Path, database: &str) -> ReviewServer {
        ReviewServer::start_with(dir, database, &[])
    }

    fn start_with(dir: &Path, database: &str, extra: &[&str]) -> ReviewServer {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_txflow"))
            .current_dir(dir)
            .args(["review", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting txflow review serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "review serve never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        ReviewServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ReviewServer {
    fn drop(&mut self) {
        crate::harness::stop(&mut self.child);
    }
}

/// Headless Chromium driven through the DevTools protocol over its pipe
/// (`--remote-debugging-pipe`: JSON messages ended by a NUL byte, commands
/// on its fd 3, answers on its fd 4), one page attached.
struct Browser {
    child: Child,
    commands: ChildStdin,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().expect("a profile dir");
        // The shell hands our pipes to Chromium's fds 3 and 4.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(
                "exec \"$0\" --headless --no-sandbox --disable-gpu --no-first-run \
                 --remote-debugging-pipe --user-data-dir=\"$1\" about:blank \
                 3<&0 4>&1 0</dev/null 1>/dev/null 2>/dev/null",
            )
            .arg(harness_var("TXFLOW_TEST_CHROMIUM"))
            .arg(profile.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        let commands = child.stdin.take().expect("chromium's command pipe");
        let mut out = child.stdout.take().expect("chromium's answer pipe");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice(&message[..end])
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Browser {
            child,
            commands,
            answers,
            next_id: 0,
            session: None,
            _profile: profile,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params) {
            Ok(result) => result,
            Err(error) => panic!("{method}: {error}"),
        }
    }

    /// A command's result, or the error Chromium answered.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("writing to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if answer["id"] == json!(id) {
                return match answer.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(answer["result"].clone()),
                };
            }
        }
    }

    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({"url": url}));
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("a session")
                .to_owned(),
        );
    }

    /// The expression's value in the page; null while the page reloads
    /// (no context to evaluate in) or when it throws.
    fn eval(&mut self, expression: &str) -> Value {
        self.try_call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        )
        .map(|result| result["result"]["value"].clone())
        .unwrap_or(Value::Null)
    }

    fn wait_until(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(expression) != json!(true) {
            assert!(Instant::now() < deadline, "never true: {expression}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A key pressed and released, as a keyboard sends it.
    fn key(&mut self, key: &str, code: &str, key_code: u32) {
        let text = if key.chars().count() == 1 { key } else { "" };
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyDown", "key": key, "code": code, "text": text,
                   "windowsVirtualKeyCode": key_code}),
        );
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": key_code}),
        );
    }

    /// A mouse click at the centre of the first element `selector` finds.
    fn click(&mut self, selector: &str) {
        let centre = self.eval(&format!(
            "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (centre[0].clone(), centre[1].clone());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_labels_on_the_page_by_key_and_by_click_and_undoes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    let (model, _) = trained(d);
    let input = generated(d, "in.csv", 200);
    let file = d.join("page.db");
    let sqlite = format!("sqlite://{}", file.display());
    txflow(
        d,
        &[
            "batch",
            &input,
            "--classifier",
            model.to_str().expect("utf-8"),
            "--review-below",
            BELOW,
            "--database-url",
            &sqlite,
            "--no-progress",
        ],
    )
    .assert_code(0);
    let items = queue(d, &sqlite, 1000);
    assert!(items.len() >= 4, "{} queued", items.len());
    let server = ReviewServer::start(d, &sqlite);

    // The API: 201, 422 outside the model's set, 404 for no transaction.
    let client = crate::harness::http();
    let post = |body: Value| {
        let request = client
            .post(format!("{}/api/labels", server.url))
            .json(&body);
        async move {
            request
                .send()
                .await
                .expect("POST /api/labels")
                .status()
                .as_u16()
        }
    };
    let last = text(&items[items.len() - 1], "transaction_id");
    assert_eq!(
        post(json!({"transaction_id": last, "category": "Pets"})).await,
        422
    );
    assert_eq!(
        post(json!({"transaction_id": uuid::Uuid::new_v4().to_string(), "category": "Travel"}))
            .await,
        404
    );
    let api: Value = client
        .get(format!("{}/api/queue?limit=3", server.url))
        .send()
        .await
        .expect("GET /api/queue")
        .json()
        .await
        .expect("JSON");
    assert_eq!(api["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        api["items"][0]["transaction_id"],
        items[0]["transaction_id"]
    );
    assert_eq!(api["pending"], json!(items.len()));

    let mut browser = tokio::task::block_in_place(Browser::start);
    let shown = items.len().min(50);
    tokio::task::block_in_place(|| {
        browser.open(&format!("{}/", server.url));
        browser.wait_until(&format!(
            "document.querySelectorAll('li.item').length === {shown}"
        ));
        assert_eq!(
            browser.eval("document.getElementById('pending').textContent"),
            json!(items.len().to_string())
        );
        assert_eq!(
            browser.eval("document.querySelector('li.item.current').dataset.id"),
            items[0]["transaction_id"]
        );
    });

    let gone = |id: &str| format!("!document.querySelector('li.item[data-id=\"{id}\"]')");
    let stored = |id: &str, category: &str| {
        sqlite_count(
            &file,
            &format!(
                "SELECT count(*) FROM labels WHERE transaction_id = '{id}' \
                 AND category = '{category}' AND source = 'review'"
            ),
        )
    };
    // Key 2: the first item takes the model's second choice.
    let (a, a_second) = (
        text(&items[0], "transaction_id"),
        text(&items[0]["top"][1], "category"),
    );
    tokio::task::block_in_place(|| {
        browser.key("2", "Digit2", 50);
        browser.wait_until(&gone(a));
        browser.wait_until("document.getElementById('labeled').textContent === '1'");
    });
    assert_eq!(stored(a, a_second), 1);

    // ↓ to the next-but-one, → to its second choice, Enter.
    let (c, c_second) = (
        text(&items[2], "transaction_id"),
        text(&items[2]["top"][1], "category"),
    );
    tokio::task::block_in_place(|| {
        browser.key("ArrowDown", "ArrowDown", 40);
        browser.key("ArrowRight", "ArrowRight", 39);
        browser.key("Enter", "Enter", 13);
        browser.wait_until(&gone(c));
    });
    assert_eq!(stored(c, c_second), 1);

    // u: the last label is taken back and its item returns.
    tokio::task::block_in_place(|| {
        browser.key("u", "KeyU", 85);
        browser.wait_until(&format!("!({})", gone(c)));
    });
    assert_eq!(stored(c, c_second), 0);

    // A click on a category button labels that item.
    let (b, b_first) = (
        text(&items[1], "transaction_id"),
        text(&items[1]["top"][0], "category"),
    );
    tokio::task::block_in_place(|| {
        browser.wait_until("document.readyState === 'complete'");
        browser.click(&format!(
            "li.item[data-id=\"{b}\"] button.choice[data-category=\"{b_first}\"]"
        ));
        browser.wait_until(&gone(b));
    });
    assert_eq!(stored(b, b_first), 1);
    let left: Vec<String> = queue(d, &sqlite, 1000)
        .iter()
        .map(|i| text(i, "transaction_id").to_owned())
        .collect();
    assert_eq!(left.len(), items.len() - 2);
    assert!(!left.iter().any(|id| id == a || id == b));
    assert!(left.iter().any(|id| id == c));
}

#[tokio::test]
async fn with_a_token_file_the_page_and_the_api_need_a_token_by_header_or_cookie() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    let token = "review-token-0123456789abcdef";
    std::fs::write(d.join("tokens"), format!("{token}\n")).expect("the token file");
    let sqlite = format!("sqlite://{}", d.join("auth.db").display());
    let server = ReviewServer::start_with(d, &sqlite, &["--auth-token-file", "tokens"]);
    let client = crate::harness::http();
    let get = |path: &str, header: Option<(&str, String)>| {
        let mut request = client.get(format!("{}{path}", server.url));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        async move { request.send().await.expect("a request") }
    };
    assert_eq!(get("/health", None).await.status(), 200);
    let page = get("/", None).await;
    assert_eq!(page.status(), 401);
    let sign_in = page.text().await.expect("a body");
    assert!(sign_in.contains("needs a token"), "{sign_in}");
    assert!(!sign_in.contains(token));
    assert_eq!(get("/api/queue", None).await.status(), 401);
    let wrong = Some(("authorization", "Bearer not-the-token-at-all".to_owned()));
    assert_eq!(get("/api/queue", wrong).await.status(), 401);
    let bearer = Some(("authorization", format!("Bearer {token}")));
    assert_eq!(get("/api/queue", bearer).await.status(), 200);
    let cookie = Some(("cookie", format!("theme=dark; txflow_token={token}")));
    let page = get("/", cookie).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("the page")
            .contains("Nothing to review")
    );
}
