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
