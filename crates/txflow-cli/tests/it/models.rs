//! Models as versions against the real PostgreSQL: reclassifying history
//! with a second model, the diff between the two, and switching the active
//! model.

use crate::harness::{Database, reference_file, txflow};
use crate::serve::Serve;

fn run(args: &[&str]) -> String {
    let out = txflow(&std::env::temp_dir(), args);
    out.assert_code(0);
    out.stdout
}

#[tokio::test]
async fn history_reclassified_with_a_second_model_diffed_and_switched() {
    let db = Database::create().await;
    let file = reference_file();
    let file = file.to_str().expect("a UTF-8 path");
    run(&["batch", file, "--database-url", &db.url]);
    let url = db.url.as_str();

    // A dry run counts and writes nothing.
    let dry = run(&[
        "reclassify",
        "--all",
        "--classifier",
        "merchant",
        "--dry-run",
        "--database-url",
        url,
    ]);
    assert!(
        dry.contains("10000 transaction(s) have no merchant-1 prediction"),
        "{dry}"
    );
    assert_eq!(
        db.count("predictions", "model_version = 'merchant-1'")
            .await,
        0
    );

    let out = run(&[
        "reclassify",
        "--all",
        "--classifier",
        "merchant",
        "--batch-size",
        "3000",
        "--database-url",
        url,
    ]);
    assert!(
        out.contains("10000 transaction(s) classified with merchant-1, 10000 prediction(s) added"),
        "{out}"
    );
    // Old predictions kept; the new ones are the merchant model's.
    assert_eq!(
        db.count("predictions", "model_version = 'reference-1'")
            .await,
        10_000
    );
    assert_eq!(
        db.count("predictions", "model_version = 'merchant-1'")
            .await,
        10_000
    );
    assert_eq!(
        db.count_sql(
            "SELECT count(*) FROM predictions p JOIN transactions t ON t.id = p.transaction_id
             WHERE p.model_version = 'merchant-1' AND t.merchant = 'Lidl' AND p.category <> 'Food'"
        )
        .await,
        0
    );
    // A rerun skips what is done; so does the same model behind txflow serve.
    let again = run(&[
        "reclassify",
        "--all",
        "--classifier",
        "merchant",
        "--database-url",
        url,
    ]);
    assert!(again.contains("0 transaction(s) classified"), "{again}");
    let serve = Serve::start_with(&["--model", "merchant"]).await;
    let served = run(&[
        "reclassify",
        "--all",
        "--classifier",
        &serve.url,
        "--database-url",
        url,
    ]);
    assert!(
        served.contains("0 transaction(s) classified with merchant-1"),
        "{served}"
    );

    // The diff agrees with the predictions themselves.
    let expected_changed = db
        .count_sql(
            "SELECT count(*) FROM predictions a JOIN predictions b USING (transaction_id)
             WHERE a.model_version = 'reference-1' AND b.model_version = 'merchant-1'
               AND a.category <> b.category",
        )
        .await;
    assert!(expected_changed > 0);
    let dir = tempfile::tempdir().expect("a temp dir");
    let page = dir.path().join("diff.html");
    let diff: serde_json::Value = serde_json::from_str(&run(&[
        "diff",
        "--from",
        "reference-1",
        "--to",
        "merchant-1",
        "--json",
        "--html",
        page.to_str().expect("UTF-8"),
        "--database-url",
        url,
    ]))
    .expect("JSON");
    assert_eq!(diff["compared"], 10_000);
    assert_eq!(diff["changed"], expected_changed);
    let cells = diff["cells"].as_array().expect("cells");
    let total: i64 = cells
        .iter()
        .map(|c| c["count"].as_i64().expect("a count"))
        .sum();
    assert_eq!(total, 10_000);
    assert!(
        cells
            .iter()
            .all(|c| !c["examples"].as_array().expect("examples").is_empty())
    );
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(
        html.contains("<table") && html.contains(&format!("{expected_changed} changed category")),
        "{html}"
    );
    let table = run(&[
        "diff",
        "--from",
        "reference-1",
        "--to",
        "merchant-1",
        "--database-url",
        url,
    ]);
    assert!(table.contains("MOVES"), "{table}");

    // Switching the active model switches what the views show.
    let listed: serde_json::Value =
        serde_json::from_str(&run(&["models", "list", "--json", "--database-url", url]))
            .expect("JSON");
    let versions: Vec<&str> = listed
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["version"].as_str().expect("a version"))
        .collect();
    assert!(
        versions.contains(&"reference-1") && versions.contains(&"merchant-1"),
        "{listed}"
    );
    run(&[
        "models",
        "register",
        "reference-1",
        "--kind",
        "builtin",
        "--database-url",
        url,
    ]);
    run(&["models", "activate", "reference-1", "--database-url", url]);
    assert_eq!(
        db.count(
            "transactions_with_latest_prediction",
            "model_version = 'reference-1'"
        )
        .await,
        10_000
    );
    run(&["models", "activate", "merchant-1", "--database-url", url]);
    assert_eq!(
        db.count(
            "transactions_with_latest_prediction",
            "model_version = 'merchant-1'"
        )
        .await,
        10_000
    );
    let unknown = txflow(
        &std::env::temp_dir(),
        &["models", "activate", "nope-9", "--database-url", url],
    );
    unknown.assert_code(1);
    assert!(
        unknown.stderr.contains("not registered"),
        "{}",
        unknown.stderr
    );
}

/// The same, as a new user does it: no flags, the default `./txflow.db`.
#[tokio::test]
async fn a_new_user_reclassifies_diffs_and_switches_models_on_the_default_sqlite_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    let file = reference_file();
    let file = file.to_str().expect("a UTF-8 path");
    let run = |args: &[&str]| {
        let out = txflow(d, args);
        out.assert_code(0);
        out.stdout
    };
    run(&["batch", file]);
    let db = rusqlite::Connection::open(d.join("txflow.db")).expect("./txflow.db");
    let count = |sql: &str| -> i64 {
        db.query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };

    // A selection: the Food transactions of a time window, as the view and
    // the stored times say.
    let selected = count(
        "SELECT count(*) FROM transactions_with_latest_prediction
         WHERE category = 'Food' AND julianday(\"timestamp\") >= julianday('2023-06-01T00:00:00Z')",
    );
    assert!(selected > 0);
    let dry = run(&[
        "reclassify",
        "--category",
        "Food",
        "--since",
        "2023-06-01T00:00:00Z",
        "--classifier",
        "merchant",
        "--dry-run",
    ]);
    assert!(
        dry.contains(&format!(
            "{selected} transaction(s) have no merchant-1 prediction"
        )),
        "{dry}"
    );
    let out = run(&[
        "reclassify",
        "--all",
        "--classifier",
        "merchant",
        "--batch-size",
        "3000",
    ]);
    assert!(
        out.contains("10000 transaction(s) classified with merchant-1, 10000 prediction(s) added"),
        "{out}"
    );
    assert_eq!(
        count("SELECT count(*) FROM predictions WHERE model_version = 'merchant-1'"),
        10_000
    );
    let again = run(&["reclassify", "--all", "--classifier", "merchant"]);
    assert!(again.contains("0 transaction(s) classified"), "{again}");

    let changed = count(
        "SELECT count(*) FROM predictions a JOIN predictions b USING (transaction_id)
         WHERE a.model_version = 'reference-1' AND b.model_version = 'merchant-1'
           AND a.category <> b.category",
    );
    assert!(changed > 0);
    let diff: serde_json::Value = serde_json::from_str(&run(&[
        "diff",
        "--from",
        "reference-1",
        "--to",
        "merchant-1",
        "--json",
    ]))
    .expect("JSON");
    assert_eq!(diff["compared"], 10_000);
    assert_eq!(diff["changed"], changed);
    let cells = diff["cells"].as_array().expect("cells");
    for cell in cells {
        let examples = cell["examples"].as_array().expect("examples");
        assert!((1..=3).contains(&examples.len()), "{cell}");
        let from = cell["from"].as_str().expect("from");
        let to = cell["to"].as_str().expect("to");
        let in_cell = count(&format!(
            "SELECT count(*) FROM predictions a JOIN predictions b USING (transaction_id)
             WHERE a.model_version = 'reference-1' AND b.model_version = 'merchant-1'
               AND a.category = '{from}' AND b.category = '{to}'"
        ));
        assert_eq!(cell["count"], in_cell, "{cell}");
    }

    let listed: serde_json::Value =
        serde_json::from_str(&run(&["models", "list", "--json"])).expect("JSON");
    let kinds: Vec<(&str, &str)> = listed
        .as_array()
        .expect("models")
        .iter()
        .map(|m| {
            (
                m["version"].as_str().expect("v"),
                m["kind"].as_str().expect("k"),
            )
        })
        .collect();
    assert!(kinds.contains(&("merchant-1", "builtin")), "{listed}");
    assert!(kinds.contains(&("reference-1", "unregistered")), "{listed}");
    run(&["models", "register", "reference-1", "--kind", "builtin"]);
    run(&["models", "activate", "reference-1"]);
    assert_eq!(
        count(
            "SELECT count(*) FROM transactions_with_latest_prediction WHERE model_version = 'reference-1'"
        ),
        10_000
    );
    run(&["models", "activate", "merchant-1"]);
    assert_eq!(
        count(
            "SELECT count(*) FROM transactions_with_latest_prediction WHERE model_version = 'merchant-1'"
        ),
        10_000
    );
    let unknown = txflow(d, &["models", "activate", "nope-9"]);
    unknown.assert_code(1);
    assert!(
        unknown.stderr.contains("not registered"),
        "{}",
        unknown.stderr
    );
}
